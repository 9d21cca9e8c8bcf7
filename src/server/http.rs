//! The HTTP endpoint: `/healthz` for probes, `/metrics` for Prometheus.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::database::Database;
use crate::metrics;

pub fn router(db: Arc<Database>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(render_metrics))
        .with_state(db)
}

async fn render_metrics(State(db): State<Arc<Database>>) -> impl IntoResponse {
    let sources: Vec<_> = db
        .sources()
        .all()
        .iter()
        .map(|h| h.stats.snapshot())
        .collect();
    let views: Vec<_> = db.views().all().iter().map(|h| h.snapshot()).collect();
    let memory = metrics::QueryMemory {
        reserved: db.session().runtime_env().memory_pool.reserved(),
        limit: db.config().memory_limit,
    };
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        metrics::render(&sources, &views, &memory),
    )
}
