//! Image loading and the reference pre/post-processing of SAM.

mod load;
mod resample;
mod sam_transform;

pub use load::{list_images, load_rgb, to_rgb, IMAGE_EXTENSIONS};
pub use resample::{resize_rgb, resize_u8, Filter};
pub use sam_transform::{
    normalize_and_pad, postprocess_masks, MaskPostprocessor, ResizeLongestSide, PIXEL_MEAN,
    PIXEL_STD,
};
