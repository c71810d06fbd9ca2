//! Listeners: the only code that reads sockets.

pub mod rtmp;
pub mod tls;
