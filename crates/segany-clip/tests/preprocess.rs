//! Preprocessing vs torchvision-on-PIL (`tools/fixtures/clip_preprocess.py`): CLIP's eval
//! transform (bit-exact uint8 after resize + crop, f32 after normalisation) and SSP-SAM's
//! long-side resize + centred zero canvas.

mod common;

use candle_core::{DType, Device};
use segany_clip::{clip_preprocess, preprocess::clip_resize_crop, ssp_sam_preprocess, RgbImage};

#[test]
fn clip_and_ssp_sam_preprocessing_match_pil() {
    let ts = common::load(&common::fixtures_dir().join("preprocess.safetensors"));
    for i in 0..2 {
        let img = &ts[&format!("image.{i}")];
        let (h, w, _) = img.dims3().unwrap();
        let bytes = img.flatten_all().unwrap().to_vec1::<u8>().unwrap();
        let rgb = RgbImage::new(&bytes, w, h).unwrap();
        for n in [64usize, 224] {
            let want = ts[&format!("clip.{i}.{n}.rgb8")]
                .flatten_all()
                .unwrap()
                .to_vec1::<u8>()
                .unwrap();
            let got = clip_resize_crop(rgb, n).unwrap();
            let diff = got.iter().zip(&want).filter(|(a, b)| a != b).count();
            println!("image {i} ({w}x{h}) CLIP resize+crop {n}: {diff} differing bytes");
            assert_eq!(got, want, "image {i}, size {n}: resize+crop not bit-exact");
        }
        let px = clip_preprocess(rgb, 64, &Device::Cpu).unwrap();
        common::assert_close(
            &format!("image {i} clip 64"),
            &px,
            &ts[&format!("clip.{i}.64")],
            1e-6,
        );
        for s in [96usize, 128] {
            let (px, place) = ssp_sam_preprocess(rgb, s, &Device::Cpu).unwrap();
            assert_eq!(px.dtype(), DType::F32);
            println!("image {i} ssp {s}: {place:?}");
            common::assert_close(
                &format!("image {i} ssp-sam {s}"),
                &px,
                &ts[&format!("ssp.{i}.{s}")],
                1e-6,
            );
        }
    }
}

#[test]
fn bad_image_buffer() {
    assert!(RgbImage::new(&[0u8; 10], 2, 2).is_err());
    assert!(RgbImage::new(&[], 0, 0).is_err());
    let px = [0u8; 12];
    let rgb = RgbImage::new(&px, 2, 2).unwrap();
    assert!(clip_preprocess(rgb, 0, &Device::Cpu).is_err());
    assert!(ssp_sam_preprocess(rgb, 0, &Device::Cpu).is_err());
}
