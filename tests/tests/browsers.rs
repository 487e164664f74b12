//! What browsers meet on a gateway, over real sockets: the live page at
//! `/` (and its former address `/live`, which redirects there).

use std::time::Duration;

use postmesh_tests::Mesh;

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_live_page_is_at_the_root_and_its_old_address_redirects() {
    let mesh = Mesh::start().await;
    let r = http().get(mesh.url() + "/").send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/html; charset=utf-8");
    let page = r.text().await.unwrap();
    assert!(page.contains("<title>postmesh live</title>"), "{page}");
    assert!(page.contains(r#"<script src="/postmesh.js"></script>"#));

    let r = http()
        .get(mesh.url() + "/postmesh.js")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    assert!(r.text().await.unwrap().contains("PostmeshClient"));

    for (old, new) in [
        ("/live", "/"),
        (
            "/live?transport=xhr-polling&pattern=feeds.%23",
            "/?transport=xhr-polling&pattern=feeds.%23",
        ),
        ("/live/postmesh.js", "/postmesh.js"),
    ] {
        let r = http().get(mesh.url() + old).send().await.unwrap();
        assert_eq!(r.status(), 308, "{old}");
        assert_eq!(r.headers()["location"], new, "{old}");
    }
    mesh.stop().await;
}
