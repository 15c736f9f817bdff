//! Where the simulated taxis may drive: inside the city limit of the map's outline
//! (`/ui/seoul.geojson`, the same file the map page draws), so no taxi is shown off
//! the map.

use std::sync::OnceLock;

/// The outline the map page draws.
const OUTLINE: &str = include_str!("../../http/ui/seoul.geojson");

/// The city limit as (lat, lng) vertices.
fn city_limit() -> &'static [(f64, f64)] {
    static LIMIT: OnceLock<Vec<(f64, f64)>> = OnceLock::new();
    LIMIT.get_or_init(|| {
        let outline: serde_json::Value = serde_json::from_str(OUTLINE).expect("the bundled outline is JSON");
        let boundary = outline["features"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["properties"]["kind"] == "boundary")
            .expect("the outline has a boundary feature");
        boundary["geometry"]["coordinates"][0]
            .as_array()
            .expect("the boundary is a polygon")
            .iter()
            .map(|p| (p[1].as_f64().expect("lat"), p[0].as_f64().expect("lng")))
            .collect()
    })
}

/// Whether (lat, lng) lies inside the city limit (even-odd rule).
pub fn inside(lat: f64, lng: f64) -> bool {
    let limit = city_limit();
    let mut inside = false;
    let mut j = limit.len() - 1;
    for (i, &(lat_i, lng_i)) in limit.iter().enumerate() {
        let (lat_j, lng_j) = limit[j];
        if (lat_i > lat) != (lat_j > lat) && lng < (lng_j - lng_i) * (lat - lat_i) / (lat_j - lat_i) + lng_i {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn city_hall_is_inside_and_the_sea_is_not() {
        assert!(inside(37.566, 126.978), "Seoul City Hall");
        assert!(!inside(37.45, 126.6), "Incheon, west of the city");
        assert!(!inside(37.8, 127.0), "north of the city limit");
    }
}
