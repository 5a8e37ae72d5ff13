//! The canonical parameter list of a configuration, and the check that a checkpoint has it.

use candle_nn::VarBuilder;

use crate::config::ClipConfig;
use crate::error::{ClipError, Result};
use crate::layout::Layout;

fn block_keys(prefix: &str, layers: usize, out: &mut Vec<String>) {
    const INNER: [&str; 12] = [
        "ln_1.weight",
        "ln_1.bias",
        "attn.in_proj_weight",
        "attn.in_proj_bias",
        "attn.out_proj.weight",
        "attn.out_proj.bias",
        "ln_2.weight",
        "ln_2.bias",
        "mlp.c_fc.weight",
        "mlp.c_fc.bias",
        "mlp.c_proj.weight",
        "mlp.c_proj.bias",
    ];
    for i in 0..layers {
        for k in INNER {
            out.push(format!("{prefix}.{i}.{k}"));
        }
    }
}

/// Canonical (OpenAI) names of every parameter the model reads for `cfg`
/// (`logit_scale` excluded: it is optional).
pub fn required_keys(cfg: &ClipConfig) -> Vec<String> {
    let mut out: Vec<String> = [
        "visual.conv1.weight",
        "visual.class_embedding",
        "visual.positional_embedding",
        "visual.ln_pre.weight",
        "visual.ln_pre.bias",
        "visual.ln_post.weight",
        "visual.ln_post.bias",
        "visual.proj",
        "token_embedding.weight",
        "positional_embedding",
        "ln_final.weight",
        "ln_final.bias",
        "text_projection",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    block_keys("visual.transformer.resblocks", cfg.vision.layers, &mut out);
    block_keys("transformer.resblocks", cfg.text.layers, &mut out);
    out
}

/// Checks that `checkpoint` (at its root, in `layout`) holds every tensor `cfg` needs and
/// reports the first absent checkpoint key as [`ClipError::MissingKey`].
pub fn check_keys(cfg: &ClipConfig, layout: Layout, checkpoint: &VarBuilder) -> Result<()> {
    for canonical in required_keys(cfg) {
        let src = layout.source(&canonical);
        let keys = src.keys();
        let ok = match &src {
            crate::layout::Source::FirstOf(_) => keys.iter().any(|k| checkpoint.contains_tensor(k)),
            _ => keys.iter().all(|k| checkpoint.contains_tensor(k)),
        };
        if !ok {
            let key = keys
                .iter()
                .find(|k| !checkpoint.contains_tensor(k))
                .cloned()
                .unwrap_or_default();
            return Err(ClipError::MissingKey {
                layout,
                key,
                canonical,
            });
        }
    }
    Ok(())
}
