//! Simulcast layer selection: which layer a subscriber should get, from its bandwidth budget
//! and the size it asked for. Pure, so tests drive it with numbers.

/// Fraction of the budget a higher layer may use before we move up to it (hysteresis against
/// flapping between two layers whose bitrates sit near the estimate).
const UP_HEADROOM: f64 = 0.85;

/// Picks the layer to forward.
///
/// `layers` holds (layer index, measured bits per second); a layer never measured has 0 and is
/// only eligible as the lowest. The current layer is kept while it fits the budget; a higher one
/// is taken only with headroom. The lowest available layer is the floor: video never stops
/// because the estimate is low.
pub fn select_layer(
    current: Option<usize>,
    layers: &[(usize, u64)],
    budget_bps: u64,
    max_layer: usize,
) -> usize {
    let lowest = layers.iter().map(|l| l.0).min().unwrap_or(0);
    let mut best = lowest;
    for &(index, bps) in layers {
        if index > max_layer || index <= best || bps == 0 {
            continue;
        }
        let allowed = if Some(index) <= current {
            budget_bps as f64
        } else {
            budget_bps as f64 * UP_HEADROOM
        };
        if bps as f64 <= allowed {
            best = index;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAYERS: [(usize, u64); 3] = [(0, 150_000), (1, 500_000), (2, 1_500_000)];

    #[test]
    fn picks_highest_that_fits() {
        assert_eq!(
            select_layer(None, &LAYERS, 100_000, 2),
            0,
            "floor is the lowest"
        );
        assert_eq!(select_layer(None, &LAYERS, 700_000, 2), 1);
        assert_eq!(select_layer(None, &LAYERS, 3_000_000, 2), 2);
    }

    #[test]
    fn requested_size_caps_the_layer() {
        assert_eq!(select_layer(None, &LAYERS, 3_000_000, 1), 1);
        assert_eq!(select_layer(None, &LAYERS, 3_000_000, 0), 0);
    }

    #[test]
    fn hysteresis_keeps_current_but_needs_headroom_to_rise() {
        // 550 kbps: layer 1 (500k) does not have 15% headroom to be entered...
        assert_eq!(select_layer(Some(0), &LAYERS, 550_000, 2), 0);
        // ...but is kept once current.
        assert_eq!(select_layer(Some(1), &LAYERS, 550_000, 2), 1);
        // And left when the budget falls below it.
        assert_eq!(select_layer(Some(1), &LAYERS, 450_000, 2), 0);
    }

    #[test]
    fn unmeasured_or_missing_layers() {
        assert_eq!(select_layer(None, &[(1, 0), (2, 0)], 9_000_000, 2), 1);
        assert_eq!(select_layer(None, &[], 9_000_000, 2), 0);
        assert_eq!(select_layer(None, &[(0, 100), (2, 0)], 9_000_000, 2), 0);
    }
}
