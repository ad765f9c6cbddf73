#![forbid(unsafe_code)]
pub mod message;
pub mod types;
pub mod protocol;
