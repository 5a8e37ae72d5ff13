//! BLIP captioning for SSA-engine (work in progress).
