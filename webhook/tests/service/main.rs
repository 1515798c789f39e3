//! The webhook's service in process: the admission and health routers ([`router`]), random and
//! mutated reviews ([`fuzz`]) and the real HTTPS listener ([`tls`]). One test binary, so the
//! helpers in [`common`] and the webhook are compiled and linked once.

mod common;

mod fuzz;
mod router;
mod tls;
