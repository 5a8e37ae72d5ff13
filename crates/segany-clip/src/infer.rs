//! Geometry inferred from tensor shapes, as OpenAI's `build_model` does.

use candle_nn::VarBuilder;

use crate::activation::Activation;
use crate::config::{ClipConfig, ClipTextConfig, ClipVisionConfig};
use crate::error::{ClipError, Result};

fn dims(vb: &VarBuilder, name: &str) -> Result<Vec<usize>> {
    if !vb.contains_tensor(name) {
        return Err(ClipError::InvalidConfig {
            field: name.into(),
            value: "absent".into(),
            reason: "needed to infer the model geometry".into(),
        });
    }
    Ok(vb.get_unchecked(name)?.dims().to_vec())
}

fn dim(shape: &[usize], i: usize, name: &str) -> Result<usize> {
    shape
        .get(i)
        .copied()
        .ok_or_else(|| ClipError::InvalidConfig {
            field: name.into(),
            value: format!("{shape:?}"),
            reason: format!("expected at least {} dims", i + 1),
        })
}

fn count_blocks(vb: &VarBuilder, prefix: &str) -> usize {
    (0..)
        .take_while(|i| vb.contains_tensor(&format!("{prefix}.{i}.attn.in_proj_weight")))
        .count()
}

impl ClipConfig {
    /// Infers the geometry from a canonical-name `VarBuilder` (see
    /// [`crate::canonical_var_builder`]): widths from `conv1`/`ln_final`, patch size from
    /// `conv1`, image size from `visual.positional_embedding`, depth by counting blocks,
    /// heads = width / 64, MLP size from `c_fc`. The activation cannot be read from weights:
    /// pass QuickGELU for OpenAI weights, GELU for LAION ones.
    pub fn infer_from_weights(vb: &VarBuilder, activation: Activation) -> Result<Self> {
        let conv = dims(vb, "visual.conv1.weight")?;
        let vpos = dims(vb, "visual.positional_embedding")?;
        let v_width = dim(&conv, 0, "visual.conv1.weight")?;
        let patch = dim(&conv, 3, "visual.conv1.weight")?;
        let n_tok = dim(&vpos, 0, "visual.positional_embedding")?;
        let grid = ((n_tok.saturating_sub(1)) as f64).sqrt().round() as usize;
        if grid * grid + 1 != n_tok {
            return Err(ClipError::InvalidConfig {
                field: "visual.positional_embedding".into(),
                value: format!("{vpos:?}"),
                reason: "token count is not 1 + a square".into(),
            });
        }
        let v_layers = count_blocks(vb, "visual.transformer.resblocks");
        let v_mlp = dim(
            &dims(vb, "visual.transformer.resblocks.0.mlp.c_fc.weight")?,
            0,
            "visual c_fc",
        )?;
        let tproj = dims(vb, "text_projection")?;
        let embed_dim = dim(&tproj, 1, "text_projection")?;
        let t_width = dim(&dims(vb, "ln_final.weight")?, 0, "ln_final.weight")?;
        let ctx = dim(
            &dims(vb, "positional_embedding")?,
            0,
            "positional_embedding",
        )?;
        let vocab = dim(
            &dims(vb, "token_embedding.weight")?,
            0,
            "token_embedding.weight",
        )?;
        let t_layers = count_blocks(vb, "transformer.resblocks");
        let t_mlp = dim(
            &dims(vb, "transformer.resblocks.0.mlp.c_fc.weight")?,
            0,
            "text c_fc",
        )?;
        let cfg = ClipConfig {
            vision: ClipVisionConfig {
                image_size: grid * patch,
                patch_size: patch,
                width: v_width,
                layers: v_layers,
                heads: v_width / 64,
                mlp_dim: v_mlp,
                activation,
                layer_norm_eps: 1e-5,
            },
            text: ClipTextConfig {
                vocab_size: vocab,
                context_length: ctx,
                width: t_width,
                layers: t_layers,
                heads: t_width / 64,
                mlp_dim: t_mlp,
                activation,
                layer_norm_eps: 1e-5,
            },
            embed_dim,
            logit_scale_init: 2.6592,
        };
        cfg.validate()?;
        Ok(cfg)
    }
}
