#![forbid(unsafe_code)]
pub mod detector;
pub mod message;
pub mod protocol;
pub mod types;
