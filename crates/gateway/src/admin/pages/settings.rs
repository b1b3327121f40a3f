//! `GET /admin/settings`: the effective configuration, every secret masked
//! (`Config::describe`, the same rows as `mpesa-gateway config check`), and this instance.

use askama::Template;
use axum::extract::State;
use axum::response::Response;

use crate::admin::error::AdminError;
use crate::admin::layout::{Layout, Section};
use crate::admin::pages::render;
use crate::admin::session::Admin;
use crate::state::AppState;

pub struct Setting {
    pub name: &'static str,
    pub value: String,
}

#[derive(Template)]
#[template(path = "admin/settings.html")]
struct SettingsPage {
    layout: Layout,
    settings: Vec<Setting>,
    instance: Vec<Setting>,
}

pub async fn show(State(state): State<AppState>, admin: Admin) -> Result<Response, AdminError> {
    let uptime = state.started_at.elapsed().as_secs();
    let page = SettingsPage {
        layout: Layout::new("Settings", Section::Settings, &admin.session),
        settings: state
            .config
            .describe()
            .into_iter()
            .map(|(name, value)| Setting { name, value })
            .collect(),
        instance: vec![
            Setting {
                name: "Version",
                value: env!("CARGO_PKG_VERSION").to_owned(),
            },
            Setting {
                name: "Database",
                value: state.health_checks.backend().to_owned(),
            },
            Setting {
                name: "Instance",
                value: state.instance_id.clone(),
            },
            Setting {
                name: "Running for",
                value: format!("{}h {:02}m", uptime / 3600, uptime % 3600 / 60),
            },
            Setting {
                name: "Secure cookies",
                value: if state.config.secure_cookies {
                    "yes (served over https)".into()
                } else {
                    "no (set MPESA_CALLBACK_URL to an https URL to turn them on)".into()
                },
            },
        ],
    };
    render(&page)
}
