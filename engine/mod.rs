//! The FP16 transformer engine: BERT-style encoders and GPT-2 and Llama-style decoders with a
//! KV cache, on the kernel library. Every kernel it runs goes through a
//! [`crate::runtime::Tenant`], so the runtime places each launch.
//!
//! Owns model configs, weights and forward passes; knows nothing of partitions or policies.

pub mod checkpoint;
pub mod config;
pub mod model;
pub mod ops;
pub mod reference;
pub mod text;
pub mod weights;

pub use config::{ConfigError, Family, ModelConfig};
pub use model::{DecodePath, MemoryNeed, Mode, Model, Workspace};
pub use ops::GemmBackend;
pub use text::Text;
pub use weights::ModelWeights;

/// What can go wrong running a model.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The runtime refused or failed.
    #[error(transparent)]
    Runtime(#[from] crate::runtime::Error),
    /// A bad config.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Weights that do not fit the config.
    #[error("weights: {0}")]
    Weights(String),
    /// A checkpoint file that cannot be used: the file, then why.
    #[error("{file}: {reason}")]
    Checkpoint {
        /// The file.
        file: String,
        /// Why.
        reason: String,
    },
    /// A request or view that does not fit its buffers.
    #[error("shape: {0}")]
    Shape(String),
    /// A tokenizer that cannot be read, or text it cannot tokenize.
    #[error("text: {0}")]
    Text(String),
}
