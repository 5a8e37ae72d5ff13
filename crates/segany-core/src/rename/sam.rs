//! SAM checkpoint layouts.
//!
//! The canonical names are Meta's original ones (`image_encoder.blocks.0.attn.qkv.weight`, as in
//! `sam_vit_b_01ec64.pth` and candle's `lmz/candle-sam`). The transformers layout
//! (`facebook/sam-vit-*`: `vision_encoder.layers.0.attn.qkv.weight`, ...) is mapped onto them
//! here, the inverse of transformers' `convert_sam_to_hf.py`.

use crate::{Error, Result};

/// The key layout of a SAM checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SamLayout {
    /// Meta's original names (`image_encoder.*`, `prompt_encoder.*`, `mask_decoder.*`).
    Meta,
    /// transformers' `SamModel` names (`vision_encoder.*`, ...).
    Transformers,
}

impl SamLayout {
    /// Detects the layout from tensor names.
    ///
    /// ```
    /// use segany_core::rename::sam::SamLayout;
    /// assert_eq!(SamLayout::detect(["vision_encoder.pos_embed"]).unwrap(), SamLayout::Transformers);
    /// assert_eq!(SamLayout::detect(["image_encoder.pos_embed"]).unwrap(), SamLayout::Meta);
    /// assert!(SamLayout::detect(["foo"]).is_err());
    /// ```
    pub fn detect<'a>(keys: impl IntoIterator<Item = &'a str>) -> Result<Self> {
        let (mut meta, mut hf) = (false, false);
        for k in keys {
            meta |= k.starts_with("image_encoder.");
            hf |= k.starts_with("vision_encoder.");
        }
        match (meta, hf) {
            (true, false) => Ok(Self::Meta),
            (false, true) => Ok(Self::Transformers),
            (true, true) => Err(Error::UnknownLayout(
                "both image_encoder.* (Meta) and vision_encoder.* (transformers) keys are present".into(),
            )),
            (false, false) => Err(Error::UnknownLayout(
                "no image_encoder.* (Meta) or vision_encoder.* (transformers) keys: not a SAM checkpoint".into(),
            )),
        }
    }

    /// Maps a tensor name of this layout to the canonical (Meta) name. `iou_head_depth` is the
    /// number of linear layers of the IoU head (3 in every released model).
    pub fn to_canonical(self, key: &str, iou_head_depth: usize) -> String {
        match self {
            Self::Meta => key.to_string(),
            Self::Transformers => hf_to_meta(key, iou_head_depth),
        }
    }
}

const HYPERNETWORK_DEPTH: usize = 3;

/// transformers' `SamFeedForward` (`proj_in`, `layers.i`, `proj_out`) to Meta's `MLP`
/// (`layers.0..depth`).
fn mlp_segment(rest: &str, depth: usize) -> String {
    if let Some(tail) = rest.strip_prefix("proj_in.") {
        return format!("layers.0.{tail}");
    }
    if let Some(tail) = rest.strip_prefix("proj_out.") {
        return format!("layers.{}.{tail}", depth.saturating_sub(1));
    }
    if let Some(tail) = rest.strip_prefix("layers.") {
        if let Some((idx, tail)) = tail.split_once('.') {
            if let Ok(i) = idx.parse::<usize>() {
                return format!("layers.{}.{tail}", i + 1);
            }
        }
    }
    rest.to_string()
}

fn hf_to_meta(key: &str, iou_head_depth: usize) -> String {
    const PE: &str = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix";
    if key == "shared_image_embedding.positional_embedding"
        || key == "prompt_encoder.shared_embedding.positional_embedding"
    {
        return PE.to_string();
    }
    if let Some(rest) = key.strip_prefix("vision_encoder.") {
        let rest = rest
            .replace("patch_embed.projection.", "patch_embed.proj.")
            .replace("neck.conv1.", "neck.0.")
            .replace("neck.layer_norm1.", "neck.1.")
            .replace("neck.conv2.", "neck.2.")
            .replace("neck.layer_norm2.", "neck.3.");
        let rest = match rest.strip_prefix("layers.") {
            Some(r) => format!(
                "blocks.{}",
                r.replace(".layer_norm1.", ".norm1.")
                    .replace(".layer_norm2.", ".norm2.")
            ),
            None => rest,
        };
        return format!("image_encoder.{rest}");
    }
    if let Some(rest) = key.strip_prefix("prompt_encoder.") {
        let rest = match rest.strip_prefix("point_embed.") {
            Some(r) => format!("point_embeddings.{r}"),
            None => rest.to_string(),
        };
        let rest = rest
            .replace("mask_embed.conv1.", "mask_downscaling.0.")
            .replace("mask_embed.layer_norm1.", "mask_downscaling.1.")
            .replace("mask_embed.conv2.", "mask_downscaling.3.")
            .replace("mask_embed.layer_norm2.", "mask_downscaling.4.")
            .replace("mask_embed.conv3.", "mask_downscaling.6.");
        return format!("prompt_encoder.{rest}");
    }
    if let Some(rest) = key.strip_prefix("mask_decoder.") {
        if let Some(r) = rest.strip_prefix("transformer.") {
            let r = r
                .replace("layer_norm_final_attn.", "norm_final_attn.")
                .replace(".layer_norm1.", ".norm1.")
                .replace(".layer_norm2.", ".norm2.")
                .replace(".layer_norm3.", ".norm3.")
                .replace(".layer_norm4.", ".norm4.");
            return format!("mask_decoder.transformer.{r}");
        }
        if let Some(r) = rest.strip_prefix("iou_prediction_head.") {
            return format!(
                "mask_decoder.iou_prediction_head.{}",
                mlp_segment(r, iou_head_depth)
            );
        }
        if let Some(r) = rest.strip_prefix("output_hypernetworks_mlps.") {
            if let Some((n, tail)) = r.split_once('.') {
                return format!(
                    "mask_decoder.output_hypernetworks_mlps.{n}.{}",
                    mlp_segment(tail, HYPERNETWORK_DEPTH)
                );
            }
        }
        let r = rest
            .replace("upscale_conv1.", "output_upscaling.0.")
            .replace("upscale_layer_norm.", "output_upscaling.1.")
            .replace("upscale_conv2.", "output_upscaling.3.");
        return format!("mask_decoder.{r}");
    }
    key.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_representative_keys() {
        let l = SamLayout::Transformers;
        let cases = [
            (
                "vision_encoder.layers.7.layer_norm1.weight",
                "image_encoder.blocks.7.norm1.weight",
            ),
            (
                "vision_encoder.layers.7.attn.rel_pos_h",
                "image_encoder.blocks.7.attn.rel_pos_h",
            ),
            (
                "vision_encoder.patch_embed.projection.bias",
                "image_encoder.patch_embed.proj.bias",
            ),
            (
                "vision_encoder.neck.layer_norm2.bias",
                "image_encoder.neck.3.bias",
            ),
            (
                "prompt_encoder.mask_embed.conv3.weight",
                "prompt_encoder.mask_downscaling.6.weight",
            ),
            (
                "prompt_encoder.point_embed.3.weight",
                "prompt_encoder.point_embeddings.3.weight",
            ),
            (
                "prompt_encoder.not_a_point_embed.weight",
                "prompt_encoder.not_a_point_embed.weight",
            ),
            (
                "mask_decoder.transformer.layers.1.layer_norm4.bias",
                "mask_decoder.transformer.layers.1.norm4.bias",
            ),
            (
                "mask_decoder.transformer.layer_norm_final_attn.weight",
                "mask_decoder.transformer.norm_final_attn.weight",
            ),
            (
                "mask_decoder.upscale_layer_norm.weight",
                "mask_decoder.output_upscaling.1.weight",
            ),
            (
                "mask_decoder.output_hypernetworks_mlps.3.proj_out.weight",
                "mask_decoder.output_hypernetworks_mlps.3.layers.2.weight",
            ),
            (
                "mask_decoder.output_hypernetworks_mlps.0.layers.0.bias",
                "mask_decoder.output_hypernetworks_mlps.0.layers.1.bias",
            ),
            (
                "mask_decoder.iou_prediction_head.proj_in.weight",
                "mask_decoder.iou_prediction_head.layers.0.weight",
            ),
            (
                "shared_image_embedding.positional_embedding",
                "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix",
            ),
        ];
        for (hf, meta) in cases {
            assert_eq!(l.to_canonical(hf, 3), meta, "{hf}");
        }
    }
}
