//! `/docs` works offline: the page and every asset it loads are served by the engine, and
//! nothing it loads names another host.

use reqwest::StatusCode;

use crate::helpers::spawn_app;

/// The values of `attribute="..."` in `html`.
fn attribute_values<'a>(html: &'a str, attribute: &str) -> Vec<&'a str> {
    let needle = format!("{attribute}=\"");
    html.match_indices(&needle)
        .filter_map(|(at, _)| html[at + needle.len()..].split('"').next())
        .collect()
}

/// Absolute URLs (`http://`, `https://`, `//host`) in `text`, with what precedes each.
fn absolute_urls(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for scheme in ["http://", "https://"] {
        for (at, _) in text.match_indices(scheme) {
            let end = text[at..]
                .find(|c: char| c.is_whitespace() || "\"'`)<>".contains(c))
                .map_or(text.len(), |e| at + e);
            found.push(text[at..end].to_owned());
        }
    }
    found
}

#[tokio::test]
async fn the_docs_page_and_its_assets_load_nothing_from_another_host() {
    let app = spawn_app().await;
    // `/docs` redirects to `/docs/`, which the client follows.
    let page = app
        .client
        .get(format!("{}/docs", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(page.url().path(), "/docs/");
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    assert!(absolute_urls(&html).is_empty(), "{html}");

    let assets: Vec<&str> = attribute_values(&html, "src")
        .into_iter()
        .chain(attribute_values(&html, "href"))
        .collect();
    assert!(assets.len() >= 4, "{html}");
    let mut scripts = 0;
    for asset in assets {
        assert!(
            !asset.starts_with("//") && !asset.contains("://"),
            "the page loads {asset} from elsewhere"
        );
        let url = format!("{}/docs/{}", app.address, asset.trim_start_matches("./"));
        let response = app.client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "{url}");
        let bytes = response.bytes().await.unwrap();
        let text = String::from_utf8_lossy(&bytes);
        if asset.ends_with(".css") {
            // Stylesheets load fonts and images through url(...) and @import.
            for reference in text
                .split("url(")
                .skip(1)
                .chain(text.split("@import").skip(1))
            {
                let reference = reference.trim_start_matches(['"', '\'', ' ']);
                assert!(
                    !reference.starts_with("http") && !reference.starts_with("//"),
                    "{asset} loads {}",
                    &reference[..reference.len().min(80)]
                );
            }
        }
        if asset.ends_with("swagger-initializer.js") {
            // The viewer reads this engine's document, and sends it to no validator service.
            assert!(text.contains("\"/openapi.json\""), "{text}");
            assert!(
                text.replace(' ', "").contains("\"validatorUrl\":\"none\""),
                "{text}"
            );
            assert!(absolute_urls(&text).is_empty(), "{text}");
        }
        if asset.ends_with(".js") {
            scripts += 1;
            // A bundled viewer mentions URLs in its help texts and licences; what it could
            // fetch by itself is a script or stylesheet from a CDN.
            for url in absolute_urls(&text) {
                for cdn in ["cdn.", "unpkg.com", "jsdelivr", "googleapis", "cloudflare"] {
                    assert!(!url.contains(cdn), "{asset} refers to {url}");
                }
            }
        }
    }
    assert!(scripts >= 2, "{html}");
}
