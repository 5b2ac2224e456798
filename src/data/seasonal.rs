//! Trends, seasons and baselines of a univariate series, in plain f64: whether a series
//! needs differencing (a KPSS test), its season (the autocorrelation of its changes), the
//! differences a model learns and their inverse, and the two baselines every forecaster
//! is judged against, naive (the last value) and seasonal naive (the value one season
//! back).

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What a series model learns: the target's levels, or its changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Difference {
    /// The levels themselves (a stationary series).
    #[default]
    None,
    /// d_t = y_t − y_{t−1}: a trend becomes a level, a random walk white noise.
    First,
    /// d_t = y_t − y_{t−P}: the change from one season back.
    Seasonal,
    /// d_t = (y_t − y_{t−P}) − (y_{t−1} − y_{t−1−P}): both.
    Both,
}

impl Difference {
    pub const ALL: [Difference; 4] = [
        Difference::None,
        Difference::First,
        Difference::Seasonal,
        Difference::Both,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Difference::None => "none",
            Difference::First => "first",
            Difference::Seasonal => "seasonal",
            Difference::Both => "both",
        }
    }

    /// Whether it needs a season P.
    pub fn seasonal(self) -> bool {
        matches!(self, Difference::Seasonal | Difference::Both)
    }

    /// Rows at the start that have no difference (the first d is at row `lag`).
    pub fn lag(self, season: usize) -> usize {
        match self {
            Difference::None => 0,
            Difference::First => 1,
            Difference::Seasonal => season,
            Difference::Both => season + 1,
        }
    }

    /// d_t for t = lag..n (n − lag values).
    pub fn apply(self, y: &[f64], season: usize) -> Vec<f64> {
        (self.lag(season)..y.len())
            .map(|t| y[t] - self.base(&y[..t], season))
            .collect()
    }

    /// What d_t is measured from, given the levels before t (at least `lag` of them):
    /// y_t = base + d_t.
    pub fn base(self, before: &[f64], season: usize) -> f64 {
        let n = before.len();
        let back = |k: usize| before[n - k];
        match self {
            Difference::None => 0.0,
            Difference::First => back(1),
            Difference::Seasonal => back(season),
            Difference::Both => back(1) + back(season) - back(season + 1),
        }
    }
}

impl std::str::FromStr for Difference {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Difference::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| {
                Error::IncompatibleArgs(format!(
                    "--difference {s:?}: expected auto, none, first, seasonal or both"
                ))
            })
    }
}

/// The KPSS statistic of level stationarity (Kwiatkowski, Phillips, Schmidt & Shin
/// 1992): η = Σ S_t² / (n² σ²), S_t the partial sums of y − mean, σ² the long-run variance
/// with a Bartlett window of ⌊4 (n/100)^¼⌋ lags. Above 0.463 (their 5 % critical value)
/// the series is not level-stationary: it trends or wanders.
pub fn kpss(y: &[f64]) -> f64 {
    let n = y.len();
    if n < 3 {
        return 0.0;
    }
    let mean = y.iter().sum::<f64>() / n as f64;
    let e: Vec<f64> = y.iter().map(|v| v - mean).collect();
    let mut s = 0.0;
    let sum_sq: f64 = e
        .iter()
        .map(|v| {
            s += v;
            s * s
        })
        .sum();
    let lags = (4.0 * (n as f64 / 100.0).powf(0.25)).floor() as usize;
    let gamma = |k: usize| e[k..].iter().zip(&e).map(|(a, b)| a * b).sum::<f64>() / n as f64;
    let mut lrv = gamma(0);
    for k in 1..=lags.min(n - 1) {
        lrv += 2.0 * (1.0 - k as f64 / (lags as f64 + 1.0)) * gamma(k);
    }
    if lrv <= 0.0 {
        return 0.0;
    }
    sum_sq / (n as f64 * n as f64 * lrv)
}

/// KPSS's 5 % critical value for level stationarity.
pub const KPSS_5_PERCENT: f64 = 0.463;

/// The differencing `auto` chooses for a training part: first differences when KPSS
/// rejects level stationarity at 5 %, else none.
pub fn auto_difference(train: &[f64]) -> Difference {
    if kpss(train) > KPSS_5_PERCENT {
        Difference::First
    } else {
        Difference::None
    }
}

/// The season of a training part: the first lag in 2..=n/3 where the autocorrelation
/// peaks above 0.3 (a local maximum), of the levels of a level-stationary series and of
/// the first differences (which remove a trend) of the others ([`kpss`]); `None` when no
/// lag stands out. With several cycles it is the shortest that stands out.
pub fn estimate_season(train: &[f64]) -> Option<usize> {
    let d: Vec<f64> = match kpss(train) > KPSS_5_PERCENT {
        true => train.windows(2).map(|w| w[1] - w[0]).collect(),
        false => train.to_vec(),
    };
    let n = d.len();
    let max = n / 3;
    if max < 3 {
        return None;
    }
    let mean = d.iter().sum::<f64>() / n as f64;
    let c: Vec<f64> = d.iter().map(|v| v - mean).collect();
    let var: f64 = c.iter().map(|v| v * v).sum();
    if var <= 0.0 {
        return None;
    }
    let acf: Vec<f64> = (0..=max + 1)
        .map(|k| c[k..].iter().zip(&c).map(|(a, b)| a * b).sum::<f64>() / var)
        .collect();
    (2..=max).find(|&k| acf[k] > 0.3 && acf[k] >= acf[k - 1] && acf[k] >= acf[k + 1])
}

/// Checks a season P against a training part of `rows` rows: at least 2, and at most half
/// of it (a seasonal difference and a seasonal naive forecast need a whole season before
/// the first value they give, and training needs rows after that).
pub fn check_season(season: usize, rows: usize) -> Result<()> {
    if season < 2 || season > rows / 2 {
        return Err(Error::BadSeries(format!(
            "--season {season}: a season is at least 2 rows and at most half the training \
             part, which has {rows} rows (at most {})",
            rows / 2
        )));
    }
    Ok(())
}

/// Mean absolute and root mean squared error of forecasts against what happened.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Errors {
    pub mae: f64,
    pub rmse: f64,
}

impl Errors {
    /// The errors of `forecast` against `actual` (the shorter length of the two).
    pub fn of(forecast: &[f64], actual: &[f64]) -> Errors {
        let n = forecast.len().min(actual.len()).max(1) as f64;
        let (abs, sq) = forecast
            .iter()
            .zip(actual)
            .fold((0.0, 0.0), |(a, s), (f, y)| {
                (a + (f - y).abs(), s + (f - y).powi(2))
            });
        Errors {
            mae: abs / n,
            rmse: (sq / n).sqrt(),
        }
    }

    /// The mean of several errors (e.g. over backtest origins).
    pub fn mean(all: &[Errors]) -> Errors {
        let n = all.len().max(1) as f64;
        Errors {
            mae: all.iter().map(|e| e.mae).sum::<f64>() / n,
            rmse: all.iter().map(|e| e.rmse).sum::<f64>() / n,
        }
    }
}

/// The naive forecast: the last value of `history`, `horizon` times.
pub fn naive(history: &[f64], horizon: usize) -> Vec<f64> {
    vec![history.last().copied().unwrap_or_default(); horizon]
}

/// The seasonal naive forecast: each step the value one season P before it (repeating the
/// last season); naive without a season or with too short a history.
pub fn seasonal_naive(history: &[f64], horizon: usize, season: Option<usize>) -> Vec<f64> {
    match season.filter(|&p| p >= 1 && p <= history.len()) {
        Some(p) => {
            let last = &history[history.len() - p..];
            (0..horizon).map(|h| last[h % p]).collect()
        }
        None => naive(history, horizon),
    }
}

/// A model's errors beside the baselines' on the same forecasts, and what the summary
/// says about them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    pub model: Errors,
    pub naive: Errors,
    pub seasonal_naive: Errors,
}

impl Scores {
    /// One line: the model's MAE and RMSE (in the target's units) and the baselines'.
    pub fn line(&self) -> String {
        format!(
            "MAE {:.4} RMSE {:.4} (naive MAE {:.4} RMSE {:.4}, seasonal naive MAE {:.4} RMSE {:.4})",
            self.model.mae,
            self.model.rmse,
            self.naive.mae,
            self.naive.rmse,
            self.seasonal_naive.mae,
            self.seasonal_naive.rmse
        )
    }

    /// Plain words on whether the model beat both baselines on MAE.
    pub fn verdict(&self) -> String {
        let best = self.naive.mae.min(self.seasonal_naive.mae);
        let which = if self.naive.mae <= self.seasonal_naive.mae {
            "naive"
        } else {
            "seasonal naive"
        };
        if self.model.mae < best {
            format!(
                "the model beats both baselines: MAE {:.4} against {which}'s {best:.4} \
                 ({:.0} % lower)",
                self.model.mae,
                100.0 * (1.0 - self.model.mae / best)
            )
        } else {
            format!(
                "the model does NOT beat the {which} baseline: MAE {:.4} against {best:.4}; \
                 forecast with the {which} method instead, or train longer, or try \
                 --difference",
                self.model.mae
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(n: usize, f: impl Fn(usize) -> f64) -> Vec<f64> {
        (0..n).map(f).collect()
    }

    #[test]
    fn differences_invert_exactly() {
        let y = series(40, |t| (t as f64).sin() * 3.0 + t as f64 * 0.5);
        for d in Difference::ALL {
            let dv = d.apply(&y, 7);
            assert_eq!(dv.len(), y.len() - d.lag(7));
            for (k, &v) in dv.iter().enumerate() {
                let t = k + d.lag(7);
                assert!((d.base(&y[..t], 7) + v - y[t]).abs() < 1e-12, "{d:?} t={t}");
            }
        }
        assert_eq!(Difference::First.apply(&[1.0, 4.0, 9.0], 2), [3.0, 5.0]);
        assert_eq!("both".parse::<Difference>().unwrap(), Difference::Both);
        assert!("second".parse::<Difference>().is_err());
    }

    #[test]
    fn kpss_tells_trends_and_walks_from_cycles() {
        let cycle = series(300, |t| (t as f64 * std::f64::consts::TAU / 12.0).sin());
        let trend = series(300, |t| {
            t as f64 * 0.1 + (t as f64 * std::f64::consts::FRAC_PI_6).sin()
        });
        // Random walks of 300 steps from an LCG: KPSS rejects most (not every draw).
        let mut state = 12345u64;
        let mut walk = || {
            let mut s = 0.0;
            (0..300)
                .map(|_| {
                    state = state
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    s += (state >> 40) as f64 / (1u64 << 24) as f64 - 0.5;
                    s
                })
                .collect::<Vec<f64>>()
        };
        let rejected = (0..20).filter(|_| kpss(&walk()) > KPSS_5_PERCENT).count();
        assert!(rejected >= 15, "{rejected} of 20 walks");
        assert!(kpss(&cycle) < KPSS_5_PERCENT, "{}", kpss(&cycle));
        assert!(kpss(&trend) > KPSS_5_PERCENT, "{}", kpss(&trend));
        assert_eq!(auto_difference(&cycle), Difference::None);
        assert_eq!(auto_difference(&trend), Difference::First);
    }

    #[test]
    fn the_season_is_found_through_a_trend_and_not_invented() {
        let trend = series(200, |t| {
            t as f64 * 0.3 + 2.0 * (t as f64 * std::f64::consts::TAU / 12.0).sin()
        });
        assert_eq!(estimate_season(&trend), Some(12));
        let two = series(300, |t| {
            let t = t as f64 * std::f64::consts::TAU;
            (t / 7.0).sin() + 0.5 * (t / 21.0).sin()
        });
        assert_eq!(estimate_season(&two), Some(7), "the shorter cycle");
        let line = series(100, |t| t as f64);
        assert_eq!(estimate_season(&line), None);
        assert!(check_season(1, 100).is_err() && check_season(51, 100).is_err());
        check_season(50, 100).unwrap();
    }

    #[test]
    fn baselines_and_errors() {
        let h = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(naive(&h, 3), [5.0; 3]);
        assert_eq!(seasonal_naive(&h, 4, Some(2)), [4.0, 5.0, 4.0, 5.0]);
        assert_eq!(seasonal_naive(&h, 2, None), [5.0, 5.0]);
        let e = Errors::of(&[1.0, 3.0], &[2.0, 1.0]);
        assert_eq!((e.mae, e.rmse), (1.5, (2.5f64).sqrt()));
        let s = Scores {
            model: Errors {
                mae: 2.0,
                rmse: 2.0,
            },
            naive: Errors {
                mae: 1.0,
                rmse: 1.0,
            },
            seasonal_naive: Errors {
                mae: 3.0,
                rmse: 3.0,
            },
        };
        assert!(
            s.verdict().contains("does NOT beat the naive baseline"),
            "{}",
            s.verdict()
        );
    }
}
