//! Rename maps between checkpoint layouts, one per model family. Each maps a foreign layout's
//! tensor names onto the canonical names the model crates build from.

pub mod sam;
