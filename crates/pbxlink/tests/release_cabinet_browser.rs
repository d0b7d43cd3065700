//! The customer cabinet of `pbxlink release-server` in headless Chromium: a customer signs in
//! with its token and sees its licensed module, versions, changelogs and download links; an
//! admin (an admin API token) sees the download count of that customer and version move after
//! the customer downloads. Screenshots: `target/test-artifacts/release_cabinet/*.png`.

mod browser;
mod release_support;

use browser::Browser;
use fantoccini::Locator;
use release_support::Site;

async fn sign_in(b: &Browser, base: &str, token: &str) {
    b.client().goto(&format!("{base}/cabinet")).await.unwrap();
    let field = b.wait_for("#token").await;
    field.send_keys(token).await.unwrap();
    b.wait_for("#loginForm button").await.click().await.unwrap();
}

async fn sign_out(b: &Browser) {
    b.wait_for("#logout").await.click().await.unwrap();
    b.wait_for("#token").await;
}

async fn text_of(b: &Browser, css: &str) -> String {
    b.wait_for(css).await.text().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn customer_sees_its_modules_and_admin_sees_downloads_move() {
    let site = Site::new("");
    site.publish("paid", "1.0.0", "stable");
    site.publish("paid", "1.1.0", "stable");
    site.publish("other", "1.0.0", "stable");
    let acme = site.add_customer("acme");
    site.ok(&[
        "release", "license", "grant", "acme", "paid", "--seats", "5",
    ]);
    let admin = site.ok(&["token", "create", "--name", "ops", "--scope", "admin"]);
    let admin = admin
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .trim()
        .to_owned();
    // Plain HTTP (as behind a TLS proxy): headless Chromium would refuse a self-signed cert.
    let server = site.serve(&[
        "--plain-http",
        "--public-url",
        "https://updates.example.test",
    ]);
    let base = format!("http://{}", server.addr);
    let b = Browser::start("release_cabinet").await;

    // A wrong token is refused.
    sign_in(&b, &base, "pbxl_not-a-token").await;
    assert_eq!(
        text_of(&b, "#loginError").await,
        "This token was not accepted."
    );

    // The customer: its license, its module's versions newest first, with changelogs.
    sign_in(&b, &base, &acme).await;
    b.wait_for("#customerView .module[data-module=paid]").await;
    assert_eq!(text_of(&b, "#who").await, "acme");
    b.wait_gone("#adminView").await;
    let license = text_of(&b, "#licenseRows tr").await;
    assert!(
        license.starts_with("paid stable no end 0 / 5 valid"),
        "{license}"
    );
    let versions: Vec<String> = {
        let rows = b
            .client()
            .find_all(Locator::Css(".module[data-module=paid] tbody tr"))
            .await
            .unwrap();
        let mut seen = Vec::new();
        for row in rows {
            seen.push(row.attr("data-version").await.unwrap().unwrap_or_default());
        }
        seen
    };
    assert_eq!(versions, ["1.1.0", "1.0.0"]);
    assert!(text_of(&b, ".module[data-module=paid] pre")
        .await
        .contains("*1.1.0* release 1.1.0"));
    // `other` is public (no license anywhere): listed as such.
    b.wait_for(".module[data-module=other]").await;
    b.screenshot("customer").await;

    // The admin view before the download.
    sign_out(&b).await;
    sign_in(&b, &base, &admin).await;
    b.wait_for("#adminView").await;
    b.wait_gone("#customerView").await;
    let key = "#downloadRows tr[data-key='acme/paid/1.1.0'] .count";
    assert!(
        b.client().find(Locator::Css(key)).await.is_err(),
        "a download counted before any happened"
    );
    assert!(text_of(&b, "#auditRows").await.contains("license-grant"));

    // The customer downloads 1.1.0 through its link (fetch: the page stays).
    sign_out(&b).await;
    sign_in(&b, &base, &acme).await;
    let link = b
        .wait_for(".module[data-module=paid] tr[data-version='1.1.0'] a.download")
        .await;
    let status = b
        .client()
        .execute_async(
            "const [a, done] = arguments; \
             fetch(a.href, {redirect: 'manual'}).then(r => done(r.type), e => done(String(e)));",
            vec![serde_json::to_value(&link).unwrap()],
        )
        .await
        .unwrap();
    // The 303 to the file (on the public https host) is not followed.
    assert_eq!(status, "opaqueredirect");

    // The admin sees the count move (the server writes counts every 2 s: refresh until then).
    sign_out(&b).await;
    sign_in(&b, &base, &admin).await;
    b.wait_for("#adminView").await;
    let mut count = String::new();
    for _ in 0..100 {
        // A refresh may re-render the table between finding the cell and reading it.
        if let Ok(cell) = b.client().find(Locator::Css(key)).await {
            if let Ok(text) = cell.text().await {
                count = text;
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        b.wait_for("#refresh").await.click().await.unwrap();
    }
    assert_eq!(count, "1", "the download never showed in the admin view");
    b.screenshot("admin").await;

    // Russian.
    b.client()
        .find(Locator::Css("#lang"))
        .await
        .unwrap()
        .select_by_value("ru")
        .await
        .unwrap();
    assert_eq!(
        text_of(&b, "#adminView h2").await,
        "Загрузки по клиентам и версиям"
    );
    b.screenshot("admin-ru").await;
    b.close().await;
}
