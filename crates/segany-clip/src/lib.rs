//! CLIP vision and text towers, exact CLIP tokenizer and CLIP Surgery on candle
