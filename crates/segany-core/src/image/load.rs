//! Decoding any image the `image` crate understands into 8-bit RGB.

use crate::{Error, Result};
use image::{DynamicImage, RgbImage};
use std::path::{Path, PathBuf};

/// Loads an image file (PNG, JPEG, BMP, TIFF, WebP, GIF; 8 or 16 bit; gray, gray+alpha, RGB or
/// RGBA) as 8-bit RGB. Alpha is dropped and gray is replicated to three channels, as
/// `PIL.Image.convert("RGB")` does; 16-bit samples are scaled to 8 bits.
pub fn load_rgb(path: impl AsRef<Path>) -> Result<RgbImage> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let img = image::load_from_memory(&bytes).map_err(|e| Error::Image {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    Ok(to_rgb(img))
}

/// File extensions [`list_images`] takes for images (compared case-insensitively).
pub const IMAGE_EXTENSIONS: [&str; 8] = ["jpg", "jpeg", "png", "bmp", "tif", "tiff", "webp", "gif"];

/// The images a command-line `--input` names: the file itself, or the files of a directory
/// (not recursive) whose extension is in [`IMAGE_EXTENSIONS`], sorted by path.
/// A path that is neither a file nor a directory is an [`Error::Io`] naming it.
pub fn list_images(input: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let input = input.as_ref();
    if input.is_file() {
        return Ok(vec![input.to_path_buf()]);
    }
    if !input.is_dir() {
        let e = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory");
        return Err(Error::io(input, e));
    }
    let mut out = Vec::new();
    for entry in std::fs::read_dir(input).map_err(|e| Error::io(input, e))? {
        let path = entry.map_err(|e| Error::io(input, e))?.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if path.is_file() && IMAGE_EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Converts a decoded image to 8-bit RGB (see [`load_rgb`]).
pub fn to_rgb(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_images_filters_sorts_and_names_missing_paths() {
        let dir = std::env::temp_dir().join(format!("segany-list-images-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub.png")).expect("mkdir");
        for f in ["b.PNG", "a.jpg", "notes.txt", "c"] {
            std::fs::write(dir.join(f), b"x").expect("write");
        }
        let got = list_images(&dir).expect("list");
        assert_eq!(got, vec![dir.join("a.jpg"), dir.join("b.PNG")]);
        assert_eq!(
            list_images(dir.join("c")).expect("file"),
            vec![dir.join("c")]
        );
        let missing = dir.join("missing");
        match list_images(&missing) {
            Err(Error::Io { path, .. }) => assert_eq!(path, missing),
            other => panic!("expected Io error, got {other:?}"),
        }
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }
}
