//! The SSP-SAM pipeline end to end on random weights (SAM ViT-B, CLIP ViT-B/16, the 224 head):
//! shapes, the original-resolution mask, the box mapping, text errors and per-image caching.
//! Numerical parity of the head is covered by `crates/segany-ssp/tests/golden.rs`.

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use segany::core::Error;
use segany::referring::{ReferringOptions, ReferringSegmenter};
use segany::{Sam, SamConfig};
use segany_clip::{ClipConfig, ClipModel, ClipTokenizer};
use segany_ssp::{SspSam, SspSamConfig};

fn pipeline() -> ReferringSegmenter {
    let dev = Device::Cpu;
    let vm = VarMap::new();
    let sam = Sam::new(
        &SamConfig::vit_b(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("SAM");
    let vm = VarMap::new();
    let clip = ClipModel::new(
        &ClipConfig::vit_b_16(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("CLIP");
    let vm = VarMap::new();
    let ssp = SspSam::new(
        &SspSamConfig::vit_b16_224(),
        VarBuilder::from_varmap(&vm, DType::F32, &dev),
    )
    .expect("SSP");
    let tok = ClipTokenizer::openai().expect("tokenizer");
    ReferringSegmenter::from_parts(sam, clip, tok, ssp, ReferringOptions::default())
        .expect("parts fit")
}

#[test]
fn pipeline_on_random_weights() {
    let mut seg = pipeline();
    let img = image::RgbImage::from_fn(300, 200, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
    });
    assert!(matches!(seg.segment_text("a dog"), Err(Error::NoImage)));
    seg.set_image(&img).expect("set_image");
    let first = seg.image_timings().expect("timings");
    // Identical pixels: nothing is re-encoded.
    seg.set_image(&img).expect("set_image");
    assert_eq!(seg.image_timings(), Some(first));

    let r = seg.segment_text("The Dog on the LEFT").expect("segment");
    assert_eq!((r.mask.height(), r.mask.width()), (200, 300));
    assert_eq!(r.logits_512.dims(), &[512, 512]);
    let [x0, y0, x1, y1] = r.box_xyxy;
    assert!(0.0 <= x0 && x0 <= x1 && x1 <= 300.0, "{:?}", r.box_xyxy);
    assert!(0.0 <= y0 && y0 <= y1 && y1 <= 200.0, "{:?}", r.box_xyxy);

    // Through the evaluation trait: the original-size mask, plus the native 512 frame
    // (logits > 0) that SSP-SAM scores.
    let sample = segany_data::refer::Sample {
        ref_id: 0,
        ann_ids: vec![],
        image_id: 0,
        category_ids: vec![],
        split: "val".into(),
        sent_id: 0,
        sent: "the dog on the left".into(),
        raw: "The Dog on the LEFT".into(),
        bbox: None,
        file_name: String::new(),
    };
    let input = segany_data::eval::SegmenterInput {
        image: &img,
        sentence: "The Dog on the LEFT",
        sample: &sample,
    };
    let p =
        segany_data::eval::ReferringSegmenter::segment(&mut seg, &input).expect("trait segment");
    assert_eq!(p.mask.as_slice(), r.mask.data());
    let frame = p.frame_mask.expect("native 512 frame");
    let logits: Vec<f32> = r.logits_512.flatten_all().unwrap().to_vec1().unwrap();
    let expect: Vec<u8> = logits.iter().map(|&v| u8::from(v > 0.0)).collect();
    assert_eq!(frame.as_slice(), expect.as_slice());

    // SSP-SAM's text: lower-cased, "." appended.
    let ids = seg.token_ids("A Dog").expect("ids");
    assert_eq!(ids.len(), 77);
    assert_eq!(ids[0], 49406);
    let eot = ids.iter().position(|&i| i == 49407).expect("EOT");
    assert_eq!(ids[eot - 1], 269, "'.' before EOT: {:?}", &ids[..eot + 1]);
    assert_eq!(ids, seg.token_ids("a dog").expect("ids"));

    assert!(matches!(
        seg.segment_text("   "),
        Err(Error::InvalidPrompt(_))
    ));
    let long = "dog ".repeat(100);
    assert!(matches!(
        seg.segment_text(&long),
        Err(Error::InvalidPrompt(_))
    ));
    seg.set_options(ReferringOptions {
        truncate: true,
        ..Default::default()
    });
    let ids = seg.token_ids(&long).expect("truncated");
    assert_eq!(ids[76], 49407);
    seg.segment_text(&long).expect("segment truncated");
}
