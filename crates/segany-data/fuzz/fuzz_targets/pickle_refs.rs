//! The refs pickle reader: any bytes give a value or an error.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segany_data::refer::{pickle_to_json, Flavor, Instances, Refer};

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = pickle_to_json(data, "fuzz") {
        let empty = Instances {
            images: vec![],
            annotations: vec![],
            categories: vec![],
        };
        let _ = Refer::from_parts("refcoco", Flavor::Refer, v, empty, "fuzz");
    }
});
