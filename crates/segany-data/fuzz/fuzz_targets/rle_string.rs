//! Compressed RLE strings: malformed input must be an error, never a panic;
//! accepted strings must round-trip.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segany_data::mask::Rle;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (h, w) = (data[0] as usize, data[1] as usize);
    if let Ok(r) = Rle::from_bytes(&data[2..], h, w) {
        let s = r.to_string();
        assert_eq!(Rle::from_string(&s, h, w).ok(), Some(r.clone()));
        let _ = r.to_bbox();
        let _ = r.area();
        if let Ok(m) = r.decode() {
            assert_eq!(Rle::encode(&m).ok().map(|e| e.area()), Some(r.area()));
        }
    }
});
