//! Presence (online / last seen) and typing, shown only to related users.

use serde_json::json;

use super::hub::frame;
use crate::app::App;
use crate::clock::rfc3339;

/// Tells `user`'s audience that it came online or went offline.
pub async fn announce(app: &App, user: &str, online: bool, last_seen: Option<i64>) {
    let audience = match app.store.presence_audience(user).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(cause = %e, "presence audience");
            return;
        }
    };
    let f = frame(
        &json!({"type": "presence", "user_id": user, "online": online,
        "last_seen": last_seen.map(rfc3339)}),
    );
    for other in audience {
        app.hub.send_to_user(&other, &f, None);
    }
}

/// The presence of everyone `user` may see, for a device that just connected.
pub async fn snapshot(app: &App, user: &str) -> Vec<serde_json::Value> {
    let sources = match app.store.presence_sources(user).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(cause = %e, "presence sources");
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(sources.len());
    for other in sources {
        let online = app.hub.is_online(&other);
        let last_seen = if online {
            None
        } else {
            app.store.last_seen(&other).await.ok().flatten()
        };
        out.push(json!({"type": "presence", "user_id": other, "online": online, "last_seen": last_seen.map(rfc3339)}));
    }
    out
}

/// After `owner` saved `other`'s number, `other` may now see `owner`'s presence: tell them at once
/// rather than at their next reconnect.
pub async fn introduce(app: &App, owner: &str, other: &str) {
    if !app.hub.is_online(owner) || !app.hub.is_online(other) {
        return;
    }
    match app.store.presence_audience(owner).await {
        Ok(audience) if audience.iter().any(|u| u == other) => {
            let f = frame(
                &json!({"type": "presence", "user_id": owner, "online": true, "last_seen": null}),
            );
            app.hub.send_to_user(other, &f, None);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(cause = %e, "presence audience"),
    }
}
