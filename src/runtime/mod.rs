//! The threaded runtime that drives the protocol core over real connections. So far: [`net`], the
//! socket plumbing (port probing, connecting with retries, reading a handshake before a deadline).
pub mod net;
