use crate::server::Shared;
use axum::Router;
use std::sync::Arc;
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
}
pub(crate) fn basic_auth(k: &str, s: &str) -> String {
    format!("{k}{s}")
}
