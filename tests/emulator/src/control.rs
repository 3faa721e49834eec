//! `/__emulator/...`: the test-control routes, listed in the crate docs ("Control routes").

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, routing};

use crate::config::ClientState;
use crate::faults::{FaultControl, FaultsUpdate};
use crate::state::AppState;

/// The control router (to be nested under `/__emulator`).
pub(crate) fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/counters", routing::get(counters))
        .route("/faults", routing::get(faults).post(set_faults))
        .route("/reset", routing::post(reset))
        .route("/clients/{id}", routing::post(set_client))
}

async fn counters(State(state): State<Arc<AppState>>) -> Response {
    Json(state.counters.snapshot()).into_response()
}

async fn faults(State(state): State<Arc<AppState>>) -> Response {
    Json(FaultControl { state }.view()).into_response()
}

async fn set_faults(
    State(state): State<Arc<AppState>>,
    Json(update): Json<FaultsUpdate>,
) -> Response {
    let control = FaultControl { state };
    control.apply(&update);
    Json(control.view()).into_response()
}

async fn reset(State(state): State<Arc<AppState>>) -> StatusCode {
    state.reset();
    StatusCode::NO_CONTENT
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientUpdate {
    state: ClientState,
}

async fn set_client(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Json(update): Json<ClientUpdate>,
) -> StatusCode {
    if state.set_client_state(&id, update.state) {
        StatusCode::NO_CONTENT
    } else {
        StatusCode::NOT_FOUND
    }
}
