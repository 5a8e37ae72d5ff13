//! SegFormer semantic segmentation for SSA (work in progress).
