//! Signed entitlements on the query listener (D24): `GET /v1/licenses/{code}/entitlement` (bearer
//! token) and the public keys at `GET /.well-known/jwks.json` (public, for the seller's software).

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, web};
use licensing_domain::{Policy, Timestamp};
use licensing_runtime::{Verdict, entitlement_json};

use crate::api::licenses::license_events;
use crate::api::{Answer, Authorized, QueryState, Refusal};
use crate::read_model::fold::replay;

fn not_configured() -> Refusal {
    Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "entitlements_not_configured",
        "no entitlement signing key: set LICENSING_ENTITLEMENT_KEYS",
    )
}

/// `GET /.well-known/jwks.json`: every public key, current first.
pub(crate) async fn jwks(state: web::Data<QueryState>) -> Answer {
    let keys = state.entitlements.as_ref().ok_or_else(not_configured)?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(keys.jwks()))
}

/// `GET /v1/licenses/{code}/entitlement`: the license's access now, signed.
pub(crate) async fn entitlement(
    _: Authorized,
    path: web::Path<String>,
    state: web::Data<QueryState>,
) -> Answer {
    let keys = state.entitlements.as_ref().ok_or_else(not_configured)?;
    let code = path.into_inner();
    let events = license_events(&state.store, &code, false).await?;
    let license = replay(&events[0].stream_id, &events).map_err(|e| Refusal::undecodable(&e))?;
    let now = state.clock.now();
    // The mode the clock gives now: the schedule may not have recorded a change of this very
    // moment yet. A recorded freeze keeps its recorded data_kept_until.
    let access = license.access_at(
        Timestamp::from_millis(koogallery::market_time::unix_millis(now)),
        &Policy::default(),
    );
    let seconds = |t: Option<Timestamp>| t.map(|t| t.as_millis().div_euclid(1000));
    let verdict = Verdict {
        mode: access.mode.as_str().to_owned(),
        until: seconds(access.until),
        data_kept_until: seconds(access.data_kept_until),
    };
    Ok(HttpResponse::Ok().json(entitlement_json(
        keys,
        &code,
        &verdict,
        now,
        state.entitlement_ttl,
    )))
}
