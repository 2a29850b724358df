use crate::server::Shared;
use axum::Router;
use std::sync::Arc;
pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
}
