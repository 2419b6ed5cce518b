//! The FP16 transformer engine (BERT-style encoders; GPT-2 and Llama-style decoders with a
//! KV cache): model configs, weights, layers and requests. Every kernel it runs goes through
//! [`crate::runtime`]'s launch path.
//!
//! Nothing here yet: the engine is built on the kernel library (see the project's issues).
