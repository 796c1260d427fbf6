//! The catalog: search, products, categories, reviews, stock and popular products.

use std::collections::{BTreeMap, HashMap};

use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, Utc};
use commerce_domain::{ProductId, Sku};
use commerce_http::problem::{FieldError, FieldErrors};
use commerce_http::{ApiError, ApiPath, ApiQuery};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{FromRow, Postgres, QueryBuilder};
use utoipa::{IntoParams, ToSchema};

use super::projections::{CATALOG, INVENTORY, RECOMMENDATIONS, REVIEWS};
use crate::consistency::{resource, version, versioned, MinPosition};
use crate::Reads;
use commerce_http::page::{CursorTime, Page, PageParams};

/// The deepest relevance offset a cursor may carry.
const MAX_OFFSET: i64 = i32::MAX as i64;

/// How close a misspelt word must be to a product name's word to match it.
const TYPO_SIMILARITY: f64 = 0.45;

/// A product as listings show it.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct ProductSummary {
    pub product_id: uuid::Uuid,
    pub sku: String,
    pub name: String,
    #[sqlx(skip)]
    #[schema(value_type = Object)]
    pub price: Value,
    #[serde(skip)]
    price_amount: i64,
    #[serde(skip)]
    currency: String,
    pub category: String,
    #[schema(value_type = Object)]
    pub attributes: Value,
    #[serde(skip)]
    created_at: DateTime<Utc>,
}

/// Search parameters. Besides these, `attr.<name>=<value>` filters on an attribute.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Full text over name (weighted first) and description; tolerates typos.
    pub q: Option<String>,
    /// A category or any of its ancestors, e.g. `apparel` or `apparel/t-shirts`.
    pub category: Option<String>,
    /// Minor units, inclusive.
    pub min_price: Option<i64>,
    /// Minor units, inclusive.
    pub max_price: Option<i64>,
    /// `relevance` (default with `q`), `newest` (default otherwise), `price_asc`, `price_desc`, `name`.
    pub sort: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// Where a listing left off: the last item's sort key and id, or an offset for relevance.
#[derive(Debug, Serialize, Deserialize)]
#[serde(untagged)]
enum SearchCursor {
    Keyset { key: Value, id: uuid::Uuid },
    Offset { offset: i64 },
}

#[derive(Clone, Copy, PartialEq)]
enum Sort {
    Relevance,
    Newest,
    PriceAsc,
    PriceDesc,
    Name,
}

/// A search, its parameters checked.
struct Search {
    params: SearchParams,
    sort: Sort,
    limit: i64,
    cursor: Option<SearchCursor>,
    attributes: Vec<(String, String)>,
}

/// The longest `q`, in characters.
const MAX_QUERY_TEXT: usize = 200;
/// The longest value of an `attr.<name>` filter, in characters (as an attribute's value).
const MAX_ATTRIBUTE_VALUE: usize = 200;

/// The search `raw` asks for, or 400 naming every parameter that is invalid.
fn parse_search(raw: &HashMap<String, String>) -> Result<Search, ApiError> {
    let mut errors = FieldErrors::default();
    let mut number = |name: &str, what: &str| -> Option<i64> {
        let value = raw.get(name)?;
        match value.trim().parse::<i64>() {
            Ok(number) => Some(number),
            Err(_) => {
                errors.push(FieldError::query(
                    name,
                    format!("{name} must be an integer ({what}), not `{value}`"),
                ));
                None
            }
        }
    };
    let min_price = number("min_price", "minor units");
    let max_price = number("max_price", "minor units");
    let limit = number("limit", "items per page");
    let params = SearchParams {
        q: raw
            .get("q")
            .map(|q| q.trim().to_owned())
            .filter(|q| !q.is_empty()),
        category: raw
            .get("category")
            .map(|c| c.trim().to_lowercase())
            .filter(|c| !c.is_empty()),
        min_price,
        max_price,
        sort: raw.get("sort").cloned(),
        limit,
        cursor: raw.get("cursor").cloned(),
    };
    if params
        .q
        .as_ref()
        .is_some_and(|q| q.chars().count() > MAX_QUERY_TEXT)
    {
        errors.push(FieldError::query(
            "q",
            format!("q must be at most {MAX_QUERY_TEXT} characters"),
        ));
    }
    let sort = match params.sort.as_deref() {
        None if params.q.is_some() => Some(Sort::Relevance),
        None | Some("newest") => Some(Sort::Newest),
        Some("relevance") if params.q.is_some() => Some(Sort::Relevance),
        Some("price_asc") => Some(Sort::PriceAsc),
        Some("price_desc") => Some(Sort::PriceDesc),
        Some("name") => Some(Sort::Name),
        Some("relevance") => {
            errors.push(FieldError::query(
                "sort",
                "sort `relevance` needs a search text `q`",
            ));
            None
        }
        Some(other) => {
            errors.push(FieldError::query(
                "sort",
                format!(
                    "sort must be `relevance`, `newest`, `price_asc`, `price_desc` or `name`, \
                     not `{other}`"
                ),
            ));
            None
        }
    };
    let page = PageParams {
        limit: params.limit,
        cursor: params.cursor.clone(),
    };
    let limit = errors.check(page.limit())?;
    let cursor: Option<Option<SearchCursor>> = errors.check(page.cursor())?;
    // A cursor is issued for one sort: one of another does not fit.
    if let (Some(Some(cursor)), Some(sort)) = (&cursor, sort) {
        if !cursor_fits(cursor, sort) {
            errors.push(cursor_error());
        }
    }
    let mut attributes = Vec::new();
    for (key, value) in raw {
        let Some(name) = key.strip_prefix("attr.") else {
            continue;
        };
        let name_ok = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            errors.push(FieldError::query(
                key,
                format!(
                    "`{key}`: an attribute name is 1 to 64 characters of A-Z, a-z, 0-9, `_` or `-`"
                ),
            ));
        } else if value.chars().count() > MAX_ATTRIBUTE_VALUE {
            errors.push(FieldError::query(
                key,
                format!("{key} must be at most {MAX_ATTRIBUTE_VALUE} characters"),
            ));
        } else {
            attributes.push((name.to_owned(), value.clone()));
        }
    }
    attributes.sort();
    errors.finish()?;
    match (sort, limit, cursor) {
        (Some(sort), Some(limit), Some(cursor)) => Ok(Search {
            params,
            sort,
            limit,
            cursor,
            attributes,
        }),
        _ => Err(ApiError::bad_request("invalid query")),
    }
}

/// Whether `cursor` could have been issued for a search in `sort` order.
fn cursor_fits(cursor: &SearchCursor, sort: Sort) -> bool {
    match (cursor, sort) {
        // Offsets this API issues are sums of page sizes; bounding them keeps the next
        // cursor's `offset + limit` from overflowing.
        (SearchCursor::Offset { offset }, Sort::Relevance) => (0..=MAX_OFFSET).contains(offset),
        (SearchCursor::Offset { .. }, _) | (SearchCursor::Keyset { .. }, Sort::Relevance) => false,
        (SearchCursor::Keyset { key, .. }, Sort::Newest) => {
            serde_json::from_value::<CursorTime>(key.clone()).is_ok()
        }
        (SearchCursor::Keyset { key, .. }, Sort::PriceAsc | Sort::PriceDesc) => key.is_i64(),
        (SearchCursor::Keyset { key, .. }, Sort::Name) => key.is_string(),
    }
}

/// The `attr.<name>=<value>` filters of a search, as OpenAPI 3.1 describes free-form query
/// parameters: an object exploded into one parameter per property.
pub struct AttributeFilters;

impl utoipa::PartialSchema for AttributeFilters {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .property_names(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^attr\.[A-Za-z0-9_-]{1,64}$")),
            ))
            .additional_properties(Some(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .max_length(Some(200)),
            ))
            .into()
    }
}

impl ToSchema for AttributeFilters {}

/// Search the catalog.
#[utoipa::path(get, path = "/v1/products", tag = "catalog",
    params(SearchParams, ("attr" = inline(Option<AttributeFilters>), Query, style = Form, explode,
        description = "`attr.<name>=<value>`: only products whose attribute `name` is `value`, e.g. `attr.colour=red&attr.size=M`"),
        ("X-Min-Position" = Option<i64>, Header, description = "wait until the catalog has applied this position")),
    responses((status = 200, description = "`items[]` and `next_cursor`", body = Page<ProductSummary>),
              (status = 400, description = "invalid parameter", body = commerce_http::problem::Problem)))]
pub async fn search(
    state: Reads,
    min: MinPosition,
    ApiQuery(raw): ApiQuery<HashMap<String, String>>,
) -> Result<axum::Json<Page<ProductSummary>>, ApiError> {
    let Search {
        params,
        sort,
        limit,
        cursor,
        attributes,
    } = parse_search(&raw)?;
    min.wait(&state, &[CATALOG]).await?;

    let mut query: QueryBuilder<Postgres> = QueryBuilder::new(
        "SELECT product_id, sku, name, price_amount, currency, category, attributes, created_at, ",
    );
    match &params.q {
        Some(q) => {
            query
                .push("(ts_rank(search, websearch_to_tsquery('english', ")
                .push_bind(q.clone());
            query
                .push(")) + word_similarity(")
                .push_bind(q.clone())
                .push(", name))::float8 AS score");
        }
        None => {
            query.push("0::float8 AS score");
        }
    }
    query.push(" FROM rm_products WHERE listed");
    if let Some(q) = &params.q {
        query
            .push(" AND (search @@ websearch_to_tsquery('english', ")
            .push_bind(q.clone());
        query
            .push(") OR word_similarity(")
            .push_bind(q.clone())
            .push(", name) >= ")
            .push_bind(TYPO_SIMILARITY)
            .push(")");
    }
    if let Some(category) = &params.category {
        query.push(" AND (category = ").push_bind(category.clone());
        query
            .push(" OR category LIKE ")
            .push_bind(format!(
                "{}/%",
                category.replace('%', "\\%").replace('_', "\\_")
            ))
            .push(")");
    }
    if let Some(min) = params.min_price {
        query.push(" AND price_amount >= ").push_bind(min);
    }
    if let Some(max) = params.max_price {
        query.push(" AND price_amount <= ").push_bind(max);
    }
    for (name, value) in &attributes {
        query
            .push(" AND attributes ->> ")
            .push_bind(name.clone())
            .push(" = ")
            .push_bind(value.clone());
    }
    let mut offset = 0;
    match (&cursor, sort) {
        (Some(SearchCursor::Offset { offset: o }), Sort::Relevance) => {
            // Offsets this API issues are sums of page sizes; bounding them keeps the next
            // cursor's `offset + limit` from overflowing.
            if !(0..=MAX_OFFSET).contains(o) {
                return Err(bad_cursor());
            }
            offset = *o;
        }
        (Some(SearchCursor::Keyset { key, id }), _) if sort != Sort::Relevance => {
            let (column, op) = match sort {
                Sort::Newest => ("created_at", "<"),
                Sort::PriceAsc => ("price_amount", ">"),
                Sort::PriceDesc => ("price_amount", "<"),
                _ => ("name", ">"),
            };
            query.push(format_args!(" AND ({column}, product_id) {op} ("));
            match sort {
                Sort::Newest => {
                    let at: CursorTime =
                        serde_json::from_value(key.clone()).map_err(|_| bad_cursor())?;
                    query.push_bind(at.0);
                }
                Sort::PriceAsc | Sort::PriceDesc => {
                    query.push_bind(key.as_i64().ok_or_else(bad_cursor)?);
                }
                _ => {
                    // `PageParams::cursor` has refused a NUL in it already.
                    query.push_bind(key.as_str().ok_or_else(bad_cursor)?.to_owned());
                }
            }
            query.push(", ").push_bind(*id).push(")");
        }
        (None, _) => {}
        _ => return Err(bad_cursor()),
    }
    query.push(match sort {
        Sort::Relevance => " ORDER BY score DESC, product_id",
        Sort::Newest => " ORDER BY created_at DESC, product_id DESC",
        Sort::PriceAsc => " ORDER BY price_amount, product_id",
        Sort::PriceDesc => " ORDER BY price_amount DESC, product_id DESC",
        Sort::Name => " ORDER BY name, product_id",
    });
    query
        .push(" LIMIT ")
        .push_bind(limit + 1)
        .push(" OFFSET ")
        .push_bind(offset);

    let mut rows: Vec<ProductSummary> = query
        .build_query_as()
        .fetch_all(&state.pool)
        .await
        .map_err(|error| state.failed(error))?;
    for row in &mut rows {
        row.price = json!({ "amount": row.price_amount, "currency": row.currency });
    }
    let page = Page::from_rows(rows, limit, |last| match sort {
        Sort::Relevance => SearchCursor::Offset {
            offset: offset + limit,
        },
        Sort::Newest => SearchCursor::Keyset {
            key: json!(last.created_at),
            id: last.product_id,
        },
        Sort::PriceAsc | Sort::PriceDesc => SearchCursor::Keyset {
            key: json!(last.price_amount),
            id: last.product_id,
        },
        Sort::Name => SearchCursor::Keyset {
            key: json!(last.name),
            id: last.product_id,
        },
    });
    Ok(axum::Json(page))
}

fn bad_cursor() -> ApiError {
    ApiError::invalid_parameters(vec![cursor_error()])
}

fn cursor_error() -> FieldError {
    FieldError::query(
        "cursor",
        "cursor is not one this API issued for this sort: pass back a `next_cursor` of the same \
         search",
    )
}

/// What [`ProductRow`] reads: a product and its rating summary.
const PRODUCT_SELECT: &str =
    "SELECT p.product_id, p.seller_id, p.sku, p.name, p.description, p.price_amount, \
        p.currency, p.category, p.attributes, p.variants, p.listed, p.created_at, p.updated_at, \
        r.review_count, r.rating_sum \
     FROM rm_products p LEFT JOIN rm_rating_summaries r USING (product_id)";

#[derive(FromRow)]
struct ProductRow {
    product_id: uuid::Uuid,
    seller_id: uuid::Uuid,
    sku: String,
    name: String,
    description: String,
    price_amount: i64,
    currency: String,
    category: String,
    attributes: Value,
    variants: Value,
    listed: bool,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    review_count: Option<i64>,
    rating_sum: Option<i64>,
}

/// A product with its variants, the stock of each SKU and its rating summary.
#[utoipa::path(get, path = "/v1/products/{id}", tag = "catalog",
    params(("id" = ProductId, Path), ("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the product, its variants, stock by SKU and rating; `ETag` `\"<version>.<digest>\"`, accepted by `If-Match` on the product's commands", body = crate::routes::views::ProductDetail),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 404, description = "no such product", body = commerce_http::problem::Problem)))]
pub async fn product(
    state: Reads,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(id): ApiPath<ProductId>,
) -> Result<Response, ApiError> {
    min.wait(&state, &[CATALOG, INVENTORY, REVIEWS]).await?;
    // Read before the row: never newer than what the body shows (see `versioned`).
    let version = version(&state, CATALOG, "product", &id.to_string()).await?;
    let row: Option<ProductRow> =
        sqlx::query_as(&format!("{PRODUCT_SELECT} WHERE p.product_id = $1"))
            .bind(id.0)
            .fetch_optional(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("product {id} does not exist")))?;
    Ok(versioned(
        &headers,
        version,
        &product_document(&state, row).await?,
    ))
}

/// The product that holds a SKU, its own or one of its variants', as `GET /v1/products/{id}`
/// shows it (delisted ones too).
#[utoipa::path(get, path = "/v1/products/by-sku/{sku}", tag = "catalog",
    params(("sku" = String, Path, description = "a product's SKU or one of its variants'"), ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "the product, as `GET /v1/products/{id}`", body = crate::routes::views::ProductDetail),
              (status = 304, description = "unchanged since the ETag sent in If-None-Match"),
              (status = 404, description = "no product holds this SKU", body = commerce_http::problem::Problem)))]
pub async fn by_sku(
    state: Reads,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Response, ApiError> {
    min.wait(&state, &[CATALOG, INVENTORY, REVIEWS]).await?;
    // A SKU is claimed by one product for good; were there two, the listed one is shown.
    let row: Option<ProductRow> = sqlx::query_as(&format!(
        "{PRODUCT_SELECT} WHERE p.sku = $1 OR p.variants @> jsonb_build_array(jsonb_build_object('sku', $1::text)) \
         ORDER BY p.listed DESC, p.created_at DESC LIMIT 1"
    ))
    .bind(sku.as_str())
    .fetch_optional(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let row = row.ok_or_else(|| ApiError::not_found(format!("no product holds SKU {sku}")))?;
    Ok(resource(&headers, &product_document(&state, row).await?))
}

/// A product with the stock of each of its SKUs and its rating summary.
async fn product_document(state: &Reads, row: ProductRow) -> Result<Value, ApiError> {
    let variant_skus: Vec<String> = row
        .variants
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["sku"].as_str().map(str::to_owned))
        .collect();
    let skus: Vec<String> = std::iter::once(row.sku.clone())
        .chain(variant_skus)
        .collect();
    let stock: Vec<(String, i64, i64)> =
        sqlx::query_as("SELECT sku, on_hand, reserved FROM rm_inventory WHERE sku = ANY($1)")
            .bind(&skus)
            .fetch_all(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    let availability: BTreeMap<String, Value> = skus
        .iter()
        .map(|sku| {
            let (on_hand, reserved) = stock
                .iter()
                .find(|(s, ..)| s == sku)
                .map_or((0, 0), |(_, h, r)| (*h, *r));
            (
                sku.clone(),
                json!({ "available": on_hand - reserved, "in_stock": on_hand - reserved > 0 }),
            )
        })
        .collect();
    let count = row.review_count.unwrap_or(0);
    let average = (count > 0)
        .then(|| (row.rating_sum.unwrap_or(0) as f64 / count as f64 * 10.0).round() / 10.0);
    let body = json!({
        "product_id": row.product_id,
        "seller_id": row.seller_id,
        "sku": row.sku,
        "name": row.name,
        "description": row.description,
        "price": { "amount": row.price_amount, "currency": row.currency },
        "category": row.category,
        "attributes": row.attributes,
        "variants": row.variants,
        "listed": row.listed,
        "availability": availability,
        "rating": { "count": count, "average": average },
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    });
    Ok(body)
}

/// A review as listed: by the reviewer's display name, never their id.
#[derive(Debug, Serialize, FromRow, ToSchema)]
pub struct ReviewView {
    /// The reviewer's name; `"forgotten"` once they asked to be forgotten; absent for reviews
    /// written before names were shown.
    #[schema(value_type = Option<String>)]
    pub author_name: Option<Value>,
    pub rating: i16,
    pub title: String,
    pub body: String,
    pub written_at: DateTime<Utc>,
    #[serde(skip)]
    pub written_position: i64,
}

/// A product's reviews, newest first.
#[utoipa::path(get, path = "/v1/products/{id}/reviews", tag = "catalog",
    params(("id" = ProductId, Path), PageParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "reviews", body = Page<ReviewView>)))]
pub async fn reviews(
    state: Reads,
    min: MinPosition,
    ApiPath(id): ApiPath<ProductId>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> Result<axum::Json<Value>, ApiError> {
    min.wait(&state, &[REVIEWS]).await?;
    let (limit, cursor) = page.read::<(CursorTime, i64)>()?;
    let (at, seq) = cursor.map_or((DateTime::<Utc>::MAX_UTC, i64::MAX), |(at, seq)| {
        (at.0, seq)
    });
    let rows: Vec<ReviewView> = sqlx::query_as(
        "SELECT author_name, rating, title, body, written_at, written_position FROM rm_reviews \
         WHERE product_id = $1 AND (written_at, written_position) < ($2, $3) \
         ORDER BY written_at DESC, written_position DESC LIMIT $4",
    )
    .bind(id.0)
    .bind(at)
    .bind(seq)
    .bind(limit + 1)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    let page = Page::from_rows(rows, limit, |r| (r.written_at, r.written_position));
    Ok(axum::Json(state.reveal(&page).await?))
}

/// A node of the category tree.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct CategoryNode {
    pub name: String,
    /// The full path, as `category` filters take it.
    pub path: String,
    /// Listed products in this category and all below it.
    pub product_count: i64,
    #[schema(no_recursion)]
    pub children: Vec<CategoryNode>,
}

fn insert(nodes: &mut Vec<CategoryNode>, parts: &[&str], prefix: &str, count: i64) {
    let Some((first, rest)) = parts.split_first() else {
        return;
    };
    let path = if prefix.is_empty() {
        (*first).to_owned()
    } else {
        format!("{prefix}/{first}")
    };
    let index = match nodes.iter().position(|n| n.name == *first) {
        Some(index) => index,
        None => {
            nodes.push(CategoryNode {
                name: (*first).to_owned(),
                path: path.clone(),
                ..Default::default()
            });
            nodes.len() - 1
        }
    };
    nodes[index].product_count += count;
    insert(&mut nodes[index].children, rest, &path, count);
}

/// The category tree with product counts.
#[utoipa::path(get, path = "/v1/categories", tag = "catalog",
    params(("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "top-level categories, each with its children", body = Vec<CategoryNode>)))]
pub async fn categories(
    state: Reads,
    min: MinPosition,
) -> Result<axum::Json<Vec<CategoryNode>>, ApiError> {
    min.wait(&state, &[CATALOG]).await?;
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT category, count(*) FROM rm_products WHERE listed GROUP BY category ORDER BY category")
            .fetch_all(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    let mut tree = Vec::new();
    for (category, count) in rows {
        let parts: Vec<&str> = category.split('/').collect();
        insert(&mut tree, &parts, "", count);
    }
    Ok(axum::Json(tree))
}

/// A SKU's stock levels.
#[utoipa::path(get, path = "/v1/inventory/{sku}", tag = "catalog",
    params(("sku" = Sku, Path), ("X-Min-Position" = Option<i64>, Header), ("If-None-Match" = Option<String>, Header)),
    responses((status = 200, description = "the stock levels; `ETag` `\"<version>.<digest>\"`, accepted by `If-Match` on the SKU's restock and adjust", body = crate::routes::views::StockLevels),
              (status = 404, description = "no stock record for this SKU", body = commerce_http::problem::Problem)))]
pub async fn inventory(
    state: Reads,
    min: MinPosition,
    headers: HeaderMap,
    ApiPath(sku): ApiPath<Sku>,
) -> Result<Response, ApiError> {
    min.wait(&state, &[INVENTORY]).await?;
    let version = version(&state, INVENTORY, "inventory", sku.as_str()).await?;
    let row: Option<(i64, i64)> =
        sqlx::query_as("SELECT on_hand, reserved FROM rm_inventory WHERE sku = $1")
            .bind(sku.as_str())
            .fetch_optional(&state.pool)
            .await
            .map_err(|error| state.failed(error))?;
    let (on_hand, reserved) =
        row.ok_or_else(|| ApiError::not_found(format!("no stock recorded for SKU {sku}")))?;
    Ok(versioned(
        &headers,
        version,
        &json!({ "sku": sku, "on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved }),
    ))
}

/// `?category=` narrows popular products.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecommendationParams {
    pub category: Option<String>,
    pub limit: Option<i64>,
}

/// Popular products (by units ordered), listed ones only.
pub(crate) async fn popular(
    state: &Reads,
    category: Option<&str>,
    exclude: &[uuid::Uuid],
    limit: i64,
) -> Result<Vec<Value>, ApiError> {
    let rows: Vec<(uuid::Uuid, String, String, i64, String, i64)> = sqlx::query_as(
        "SELECT p.product_id, p.sku, p.name, p.price_amount, p.currency, pop.units FROM rm_product_popularity pop \
         JOIN rm_products p USING (product_id) \
         WHERE p.listed AND ($1::text IS NULL OR p.category = $1 OR p.category LIKE $1 || '/%') AND NOT (p.product_id = ANY($2)) \
         ORDER BY pop.units DESC, pop.last_ordered DESC, p.product_id LIMIT $3",
    )
    .bind(category)
    .bind(exclude)
    .bind(limit)
    .fetch_all(&state.pool)
    .await
    .map_err(|error| state.failed(error))?;
    Ok(rows
        .into_iter()
        .map(|(product_id, sku, name, amount, currency, units)| {
            json!({ "product_id": product_id, "sku": sku, "name": name, "price": { "amount": amount, "currency": currency }, "units_ordered": units })
        })
        .collect())
}

/// Popular products, by recent orders.
#[utoipa::path(get, path = "/v1/recommendations", tag = "catalog",
    params(RecommendationParams, ("X-Min-Position" = Option<i64>, Header)),
    responses((status = 200, description = "products, most ordered first", body = crate::routes::views::Recommendations)))]
pub async fn recommendations(
    state: Reads,
    min: MinPosition,
    ApiQuery(params): ApiQuery<RecommendationParams>,
) -> Result<axum::Json<Value>, ApiError> {
    min.wait(&state, &[RECOMMENDATIONS, CATALOG]).await?;
    let limit = params.limit.unwrap_or(10).clamp(1, 100);
    let category = params.category.map(|c| c.to_lowercase());
    Ok(axum::Json(
        json!({ "items": popular(&state, category.as_deref(), &[], limit).await? }),
    ))
}
