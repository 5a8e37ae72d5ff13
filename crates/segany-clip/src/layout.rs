//! Checkpoint layouts and their rename maps onto the canonical (OpenAI) key names.
//!
//! The model is written once, with `vb.pp(..)` paths that mirror OpenAI's state dict
//! (`visual.transformer.resblocks.N.attn.in_proj_weight`, `visual.proj`, `text_projection`, ...).
//! Each layout is one function from a canonical name to where the tensor lives in the
//! checkpoint ([`Source`]): a plain rename, a transposed projection, or q/k/v weights that must
//! be fused into `in_proj_*`.

use std::fmt;

use candle_nn::VarBuilder;

use crate::error::{ClipError, Result};

/// Key layout of a CLIP checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Layout {
    /// transformers `CLIPModel` (`openai/clip-vit-*` `model.safetensors`): `vision_model.*`,
    /// `text_model.*`, separate `q_proj`/`k_proj`/`v_proj`, `pre_layrnorm`,
    /// `visual_projection.weight` stored as `[embed, width]`.
    Transformers,
    /// open_clip (`open_clip_pytorch_model.safetensors`, `open_clip_model.safetensors`):
    /// OpenAI names, fused `in_proj_weight`; text keys optionally under `text.` (`CustomTextCLIP`).
    OpenClip,
    /// OpenAI's original state dict converted to safetensors (SSP-SAM's `CS-ViT-*.pt`):
    /// `visual.*`, `transformer.*`, `visual.proj`, `text_projection`; the extra buffers
    /// `input_resolution`, `context_length`, `vocab_size` are ignored.
    OpenAi,
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layout::Transformers => "transformers",
            Layout::OpenClip => "open_clip",
            Layout::OpenAi => "OpenAI",
        })
    }
}

/// Where a canonical tensor comes from in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Same tensor under another name.
    Key(String),
    /// The transpose of a 2-D tensor (a `Linear` weight standing for an `x @ W` matrix).
    Transposed(String),
    /// Concatenation along dim 0 (q, k, v projections fused into `in_proj_*`).
    Concat(Vec<String>),
    /// The first alternative whose tensors all exist.
    FirstOf(Vec<Source>),
}

impl Source {
    /// Checkpoint keys this source reads (all alternatives for [`Source::FirstOf`]).
    pub fn keys(&self) -> Vec<String> {
        match self {
            Source::Key(k) | Source::Transposed(k) => vec![k.clone()],
            Source::Concat(ks) => ks.clone(),
            Source::FirstOf(alts) => alts.iter().flat_map(Source::keys).collect(),
        }
    }
}

const PROBE_TRANSFORMERS: &str = "vision_model.embeddings.class_embedding";
const PROBE_VISUAL: &str = "visual.class_embedding";
const PROBE_OPENCLIP_TEXT: &str = "text.token_embedding.weight";
const PROBE_OPENAI_EXTRA: [&str; 2] = ["input_resolution", "context_length"];

impl Layout {
    /// Detects the layout by probing a few keys of `vb` (which must be at the checkpoint root).
    ///
    /// `visual.*` checkpoints with OpenAI's extra buffers are [`Layout::OpenAi`], with text keys
    /// under `text.` [`Layout::OpenClip`]; otherwise the two layouts coincide and
    /// [`Layout::OpenAi`] is returned.
    pub fn detect(vb: &VarBuilder) -> Result<Self> {
        if vb.contains_tensor(PROBE_TRANSFORMERS) {
            return Ok(Layout::Transformers);
        }
        if vb.contains_tensor(PROBE_VISUAL) {
            if vb.contains_tensor(PROBE_OPENCLIP_TEXT) {
                return Ok(Layout::OpenClip);
            }
            if PROBE_OPENAI_EXTRA.iter().any(|k| vb.contains_tensor(k)) {
                return Ok(Layout::OpenAi);
            }
            return Ok(Layout::OpenAi);
        }
        Err(ClipError::UnknownLayout {
            probed: vec![PROBE_TRANSFORMERS.into(), PROBE_VISUAL.into()],
        })
    }

    /// Detects the layout from a list of key names (e.g. a safetensors header).
    pub fn detect_from_keys<S: AsRef<str>>(keys: &[S]) -> Result<Self> {
        let has = |k: &str| keys.iter().any(|x| x.as_ref() == k);
        if has(PROBE_TRANSFORMERS) {
            Ok(Layout::Transformers)
        } else if has(PROBE_VISUAL) && has(PROBE_OPENCLIP_TEXT) {
            Ok(Layout::OpenClip)
        } else if has(PROBE_VISUAL) {
            Ok(Layout::OpenAi)
        } else {
            Err(ClipError::UnknownLayout {
                probed: vec![PROBE_TRANSFORMERS.into(), PROBE_VISUAL.into()],
            })
        }
    }

    /// The rename map: where the canonical tensor `name` lives in a checkpoint of this layout.
    pub fn source(&self, name: &str) -> Source {
        match self {
            Layout::OpenAi => Source::Key(name.to_string()),
            Layout::OpenClip => open_clip_source(name),
            Layout::Transformers => transformers_source(name),
        }
    }
}

fn open_clip_source(name: &str) -> Source {
    let is_text = name.starts_with("transformer.")
        || matches!(name, "token_embedding.weight" | "positional_embedding")
        || name.starts_with("ln_final.");
    if is_text {
        Source::FirstOf(vec![
            Source::Key(name.to_string()),
            Source::Key(format!("text.{name}")),
        ])
    } else if name == "text_projection" {
        Source::FirstOf(vec![
            Source::Key(name.to_string()),
            Source::Key("text.text_projection".into()),
            Source::Transposed("text.text_projection.weight".into()),
        ])
    } else {
        Source::Key(name.to_string())
    }
}

/// Renames the inside of one residual block (`ln_1`, `attn.*`, `mlp.*`).
fn transformers_block(prefix: &str, rest: &str) -> Source {
    let key = |s: &str| Source::Key(format!("{prefix}.{s}"));
    let qkv = |suffix: &str| {
        Source::Concat(
            ["q_proj", "k_proj", "v_proj"]
                .iter()
                .map(|p| format!("{prefix}.self_attn.{p}.{suffix}"))
                .collect(),
        )
    };
    match rest {
        "attn.in_proj_weight" => qkv("weight"),
        "attn.in_proj_bias" => qkv("bias"),
        _ => {
            let renamed = rest
                .replacen("ln_1.", "layer_norm1.", 1)
                .replacen("ln_2.", "layer_norm2.", 1)
                .replacen("mlp.c_fc.", "mlp.fc1.", 1)
                .replacen("mlp.c_proj.", "mlp.fc2.", 1)
                .replacen("attn.out_proj.", "self_attn.out_proj.", 1);
            key(&renamed)
        }
    }
}

fn transformers_source(name: &str) -> Source {
    const BLOCKS: [(&str, &str); 2] = [
        (
            "visual.transformer.resblocks.",
            "vision_model.encoder.layers.",
        ),
        ("transformer.resblocks.", "text_model.encoder.layers."),
    ];
    for (canon, hf) in BLOCKS {
        if let Some(rest) = name.strip_prefix(canon) {
            if let Some((idx, inner)) = rest.split_once('.') {
                return transformers_block(&format!("{hf}{idx}"), inner);
            }
        }
    }
    let renamed = match name {
        "visual.conv1.weight" => "vision_model.embeddings.patch_embedding.weight".to_string(),
        "visual.class_embedding" => "vision_model.embeddings.class_embedding".to_string(),
        "visual.positional_embedding" => {
            "vision_model.embeddings.position_embedding.weight".to_string()
        }
        "visual.proj" => return Source::Transposed("visual_projection.weight".into()),
        "text_projection" => return Source::Transposed("text_projection.weight".into()),
        "token_embedding.weight" => "text_model.embeddings.token_embedding.weight".to_string(),
        "positional_embedding" => "text_model.embeddings.position_embedding.weight".to_string(),
        "logit_scale" => "logit_scale".to_string(),
        other => {
            if let Some(s) = other.strip_prefix("visual.ln_pre.") {
                format!("vision_model.pre_layrnorm.{s}")
            } else if let Some(s) = other.strip_prefix("visual.ln_post.") {
                format!("vision_model.post_layernorm.{s}")
            } else if let Some(s) = other.strip_prefix("ln_final.") {
                format!("text_model.final_layer_norm.{s}")
            } else {
                other.to_string()
            }
        }
    };
    Source::Key(renamed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers_map() {
        let l = Layout::Transformers;
        assert_eq!(
            l.source("visual.ln_pre.weight"),
            Source::Key("vision_model.pre_layrnorm.weight".into())
        );
        assert_eq!(
            l.source("transformer.resblocks.3.mlp.c_fc.bias"),
            Source::Key("text_model.encoder.layers.3.mlp.fc1.bias".into())
        );
        assert_eq!(
            l.source("visual.transformer.resblocks.11.attn.in_proj_weight"),
            Source::Concat(vec![
                "vision_model.encoder.layers.11.self_attn.q_proj.weight".into(),
                "vision_model.encoder.layers.11.self_attn.k_proj.weight".into(),
                "vision_model.encoder.layers.11.self_attn.v_proj.weight".into(),
            ])
        );
        assert_eq!(
            l.source("visual.proj"),
            Source::Transposed("visual_projection.weight".into())
        );
    }
}
