//! The ceiling for load tests: an actix-web server whose POST handler does nothing but answer 202.
//!
//! `cargo run --release --example noop -- 127.0.0.1:9999`

use actix_web::{web, App, HttpResponse, HttpServer};

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9999".into());
    HttpServer::new(|| {
        App::new().route(
            "/api/event",
            web::post().to(|_body: web::Bytes| async { HttpResponse::Accepted().finish() }),
        )
    })
    .bind(addr)?
    .run()
    .await
}
