//! Polygon rasterisation never panics, and its RLE is consistent.
#![no_main]
use libfuzzer_sys::fuzz_target;
use segany_data::mask::Rle;

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (h, w) = (data[0] as usize, data[1] as usize);
    let xy: Vec<f64> = data[2..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
        .collect();
    if let Ok(r) = Rle::from_polygon(&xy, h, w) {
        assert_eq!(r.counts().iter().map(|&c| c as u64).sum::<u64>(), (h * w) as u64);
    }
});
