//! Policy packs and the proof report: a shipped pack imports once (a second import skips every
//! name and writes nothing), a preview writes nothing, a pack's text imports with its bad
//! policies reported; the proof states each policy's guarantee, runs its recipes and replays
//! recorded traffic through it.

use axum::http::StatusCode;
use serde_json::json;
use sqlx::PgPool;

use crate::api::{assert_client_error, Api};

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn a_pack_imports_once_and_its_proof_holds(pool: PgPool) {
    let api = Api::start(pool).await;
    let (status, packs) = api.get("/api/policies/packs", &api.readonly).await;
    assert_eq!(status, StatusCode::OK, "{packs}");
    assert!(packs["packs"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["id"] == "claude-code-starter"));

    let before = api.events().await;
    let (status, preview) = api
        .post(
            "/api/policies/import?preview=true",
            &api.admin,
            json!({"pack": "claude-code-starter"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{preview}");
    assert_eq!(preview["would_create"], 3, "{preview}");
    assert_eq!(api.events().await, before, "a preview writes nothing");

    let (status, imported) = api
        .post(
            "/api/policies/import",
            &api.admin,
            json!({"pack": "claude-code-starter"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["imported"], 3, "{imported}");
    assert_eq!(imported["errors"], json!([]));
    assert_eq!(api.events().await, before + 3);
    let (_, again) = api
        .post(
            "/api/policies/import",
            &api.admin,
            json!({"pack": "claude-code-starter"}),
        )
        .await;
    assert_eq!(again["imported"], 0, "{again}");
    assert_eq!(again["skipped"], 3);
    assert_eq!(api.events().await, before + 3, "idempotent");

    // Enforced: a deploy is held now.
    let (_, held) = api
        .post(
            "/api/guard",
            &api.member,
            json!({"action_type": "deploy", "agent_id": "a"}),
        )
        .await;
    assert_eq!(held["decision"], "require_approval", "{held}");

    let (status, proof) = api
        .get("/api/policies/proof?format=json", &api.readonly)
        .await;
    assert_eq!(status, StatusCode::OK, "{proof}");
    assert_eq!(proof["format"], "json");
    let report = &proof["report"];
    assert_eq!(report["summary"]["policies"], 3, "{report}");
    assert_eq!(report["summary"]["proven"], 3, "{report}");
    assert_eq!(report["summary"]["recipes_passed"], 6);
    let ship = report["policies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "Hold deploys, force pushes and migrations")
        .unwrap();
    assert_eq!(
        ship["guarantee"],
        "Every request of action type deploy, git_force_push, database_migration is held for approval"
    );
    assert_eq!(ship["traffic"]["fired"], 1, "{ship}");
    assert_eq!(ship["traffic"]["enforced"], 1);
    let (_, md) = api.get("/api/policies/proof", &api.readonly).await;
    assert_eq!(md["format"], "md");
    let text = md["report"].as_str().unwrap();
    assert!(text.starts_with("# Policy proof report"), "{text}");
    assert!(text.contains("| Hold deploys, force pushes and migrations | require_approval | proven | 2/2 | 1 of 1 | 1 | 0 |"), "{text}");
}

#[sqlx::test(migrator = "dashclaw_store::MIGRATOR")]
async fn pack_text_imports_what_validates_and_bad_input_writes_nothing(pool: PgPool) {
    let api = Api::start(pool).await;
    let yaml = "policies:\n  - id: hold-pay\n    policy_type: require_approval\n    rules: {action_types: [payment]}\n  - id: broken\n    policy_type: risk_threshold\n    rules: {threshold: 400}\n";
    let before = api.events().await;
    let (status, imported) = api
        .post("/api/policies/import", &api.admin, json!({"yaml": yaml}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{imported}");
    assert_eq!(imported["imported"], 1);
    assert_eq!(imported["policies"][0]["name"], "hold-pay");
    assert!(
        imported["errors"][0]
            .as_str()
            .unwrap()
            .starts_with("broken: "),
        "{imported}"
    );
    assert_eq!(api.events().await, before + 1);

    let before = api.events().await;
    for (key, body, expected) in [
        (&api.admin, json!({}), StatusCode::BAD_REQUEST),
        (&api.admin, json!({"pack": "nope"}), StatusCode::BAD_REQUEST),
        (&api.admin, json!({"pack": 3}), StatusCode::BAD_REQUEST),
        (
            &api.admin,
            json!({"yaml": "policies: ["}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &api.admin,
            json!({"yaml": "policies: []"}),
            StatusCode::BAD_REQUEST,
        ),
        (&api.admin, json!({"policies": {}}), StatusCode::BAD_REQUEST),
        (
            &api.admin,
            json!({"pack": "spend-lockdown", "yaml": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            &api.member,
            json!({"pack": "spend-lockdown"}),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, answer) = api.post("/api/policies/import", key, body.clone()).await;
        assert_client_error(status, &answer, expected);
        assert_eq!(api.events().await, before, "{body} wrote");
    }
    let (_, invalid) = api
        .post("/api/policies/import", &api.admin, json!({"pack": "nope"}))
        .await;
    assert!(
        invalid["error"]
            .as_str()
            .unwrap()
            .starts_with("Invalid pack. Choose from: catastrophe-only, claude-code-starter"),
        "{invalid}"
    );
    for uri in [
        "/api/policies/proof?format=pdf",
        "/api/policies/proof?days=x",
        "/api/policies/import?preview=maybe",
    ] {
        let (status, answer) = if uri.contains("import") {
            api.post(uri, &api.admin, json!({"pack": "spend-lockdown"}))
                .await
        } else {
            api.get(uri, &api.readonly).await
        };
        assert_client_error(status, &answer, StatusCode::BAD_REQUEST);
    }
    assert_eq!(api.events().await, before);
    // Another org's proof is its own.
    let (_, theirs) = api
        .get("/api/policies/proof?format=json", &api.other_org)
        .await;
    assert_eq!(theirs["report"]["summary"]["policies"], 0);
}
