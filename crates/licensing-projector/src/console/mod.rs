//! The operator console (ADR 0015): server-rendered pages under `/console/` on the query listener,
//! signed in with an API token, in English and 简体中文. It reads through the query API's own
//! functions and acts through the same commands and re-drives as the APIs, with the token's name
//! as actor. No JavaScript: every page reads and works without it.

mod context;
mod dead_letters;
mod i18n;
mod license;
mod licenses;
mod overview;
mod probe;
mod session;
mod sign_in;
mod timeline;
mod widgets;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use licensing_runtime::{get_only, post_only};

pub(crate) use context::Console;
use context::see_other;

/// The console's routes.
pub(crate) fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only("/console", to_overview))
        .service(get_only("/console/", overview::overview))
        .service(get_only("/console/style.css", style))
        .service(
            web::resource("/console/sign-in")
                .route(web::get().to(sign_in::sign_in_form))
                .route(web::post().to(sign_in::sign_in)),
        )
        .service(post_only("/console/sign-out", sign_in::sign_out))
        .service(get_only("/console/licenses", licenses::licenses))
        .service(get_only("/console/licenses/{code}", license::license))
        .service(post_only(
            "/console/licenses/{code}/activation",
            license::request_activation,
        ))
        .service(post_only(
            "/console/licenses/{code}/drift",
            license::resolve_drift,
        ))
        .service(get_only(
            "/console/licenses/{code}/evidence",
            license::evidence,
        ))
        .service(get_only(
            "/console/dead-letters",
            dead_letters::dead_letters,
        ))
        .service(post_only(
            "/console/dead-letters/redrive",
            dead_letters::redrive_all,
        ))
        .service(get_only(
            "/console/dead-letters/{id}",
            dead_letters::dead_letter,
        ))
        .service(post_only(
            "/console/dead-letters/{id}/redrive",
            dead_letters::redrive,
        ))
        .service(get_only("/console/probe", probe::probe));
}

const CSS: &str = include_str!("console.css");

async fn style() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/css; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "max-age=300"))
        .body(CSS)
}

async fn to_overview() -> HttpResponse {
    see_other("/console/")
}
