//! Hand-worked metric expectations (the working is in the comments).

use segany_data::mask::Mask;
use segany_data::metrics::{
    intersection_union, GresMetrics, ResMetrics, SampleIou, SspSamGresMetrics, LAVT_THRESHOLDS,
    SSP_SAM_THRESHOLDS,
};

fn m(h: usize, w: usize, v: &[u8]) -> Mask {
    Mask::from_vec(h, w, v.to_vec()).unwrap()
}

#[test]
fn res_three_samples_by_hand() {
    // A: pred 1100 / gt 1110 -> I=2, U=3, IoU 0.6667
    // B: pred 1111 / gt 1111 -> I=4, U=4, IoU 1
    // C: pred 0001 / gt 1000 -> I=0, U=2, IoU 0
    let a = intersection_union(&m(1, 4, &[1, 1, 0, 0]), &m(1, 4, &[1, 1, 1, 0])).unwrap();
    let b = intersection_union(&m(2, 2, &[1, 1, 1, 1]), &m(2, 2, &[1, 1, 1, 1])).unwrap();
    let c = intersection_union(&m(1, 4, &[0, 0, 0, 1]), &m(1, 4, &[1, 0, 0, 0])).unwrap();
    assert_eq!((a.intersection, a.union), (2, 3));
    assert_eq!((b.intersection, b.union), (4, 4));
    assert_eq!((c.intersection, c.union), (0, 2));
    let mut r = ResMetrics::default();
    for s in [a, b, c] {
        r.push(s);
    }
    let s = r.summary(&LAVT_THRESHOLDS);
    // mIoU = (2/3 + 1 + 0) / 3 = 5/9; oIoU = (2+4+0)/(3+4+2) = 6/9
    assert!((s.miou - 5.0 / 9.0).abs() < 1e-15);
    assert!((s.oiou - 6.0 / 9.0).abs() < 1e-15);
    // IoUs 0.667, 1, 0: >=0.5 and >=0.6 hold for 2 of 3; >=0.7, 0.8, 0.9 for 1 of 3
    let p: Vec<f64> = s.precision.iter().map(|p| p.1).collect();
    assert_eq!(
        p,
        vec![2.0 / 3.0, 2.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0]
    );
}

#[test]
fn res_threshold_is_inclusive_and_empty_union_is_zero() {
    let mut r = ResMetrics::default();
    r.push(SampleIou {
        intersection: 13,
        union: 20,
    }); // exactly 0.65
    r.push(SampleIou::default()); // U = 0 -> IoU 0
    let s = r.summary(&SSP_SAM_THRESHOLDS);
    // 0.65 >= 0.65 counts; 0.65 < 0.7 does not.
    assert_eq!(s.precision[3], (0.65, 0.5));
    assert_eq!(s.precision[4], (0.7, 0.0));
    assert_eq!(s.miou, 0.65 / 2.0);
    assert_eq!(s.oiou, 13.0 / 20.0);
}

#[test]
fn gres_rela_confusion_by_hand() {
    // 1: no target, predicted no target -> TP, IoU 1, adds nothing to I/U
    // 2: no target, predicted a 6-pixel mask -> FN, IoU 0, U += 6
    // 3: target, I=9 U=10, not rejected -> TN, IoU 0.9
    // 4: target, I=7 U=10, rejected -> FP, I := 0, IoU 0, U += 10
    // 5: target, I=7 U=10 -> TN, IoU 0.7
    let mut g = GresMetrics::default();
    g.push(SampleIou::default(), true, true);
    g.push(
        SampleIou {
            intersection: 0,
            union: 6,
        },
        true,
        false,
    );
    for (i, nt) in [(9, false), (7, true), (7, false)] {
        g.push(
            SampleIou {
                intersection: i,
                union: 10,
            },
            false,
            nt,
        );
    }
    let s = g.summary();
    assert_eq!(s.confusion, [1, 2, 1, 1]);
    // gIoU = (1 + 0 + 0.9 + 0 + 0.7) / 5 = 0.52
    assert!((s.giou - 0.52).abs() < 1e-15);
    // cIoU = (9 + 0 + 7) / (6 + 10 + 10 + 10) = 16/36
    assert_eq!(s.ciou, 16.0 / 36.0);
    // N-acc = TP/(TP+FN) = 1/2; T-acc = TN/(TN+FP) = 2/3
    assert_eq!(s.n_acc, Some(0.5));
    assert_eq!(s.t_acc, Some(2.0 / 3.0));
    // targeted IoUs 0.9, 0, 0.7: Pr@0.7 = 2/3, Pr@0.8 = 1/3, Pr@0.9 = 1/3
    assert_eq!(
        s.precision,
        vec![(0.7, 2.0 / 3.0), (0.8, 1.0 / 3.0), (0.9, 1.0 / 3.0)]
    );
}

#[test]
fn ssp_sam_empty_target_rule_by_hand() {
    // Empty GT with 0, 49 and 50 predicted pixels: IoU 1, 1, 0 (50 is not < 50).
    // Non-empty GT: perfect (IoU 1, counted by SSP-SAM as "empty pred") and 1/2.
    let mut s = SspSamGresMetrics::default();
    s.push(SampleIou::default(), 0, 0);
    s.push(
        SampleIou {
            intersection: 0,
            union: 49,
        },
        0,
        49,
    );
    s.push(
        SampleIou {
            intersection: 0,
            union: 50,
        },
        0,
        50,
    );
    s.push(
        SampleIou {
            intersection: 5,
            union: 5,
        },
        5,
        5,
    );
    s.push(
        SampleIou {
            intersection: 2,
            union: 4,
        },
        3,
        3,
    );
    let r = s.summary();
    // G_iou = (1+1+0+1+0.5)/5 = 0.7; C_iou = (0+0+0+5+2)/(0+0+50+5+4) = 7/59
    assert!((r.giou - 0.7).abs() < 1e-12);
    assert_eq!(r.ciou, 7.0 / 59.0);
    // No_target_acc = #(IoU==1) / #(empty GT) = 3/3; target_acc = #(0<IoU<1)/#(non-empty) = 1/2
    assert_eq!(r.no_target_acc, Some(1.0));
    assert_eq!(r.target_acc, Some(0.5));
    // Mask_Pr@0.50 = 4/5 (IoUs 1,1,0,1,0.5)
    assert_eq!(r.precision[0], (0.5, 0.8));
}
