//! instances.json and prepared-annotation parsing, then mask building.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segany_data::refer::Instances;
use segany_data::sspsam::PreparedAnns;

fuzz_target!(|data: &[u8]| {
    let _ = PreparedAnns::from_json(data, "fuzz");
    if let Ok(inst) = serde_json::from_slice::<Instances>(data) {
        for a in inst.annotations.iter().take(4) {
            let _ = a.segmentation.to_mask(64, 64);
        }
    }
});
