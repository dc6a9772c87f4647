//! The periods a question names, relative to the run's clock (UTC days): relative ones
//! ("yesterday", "this week", "last month", "in the last 3 weeks", "since Monday"), absolute
//! ones ("on Nov 20", "between 2026-11-02 and 2026-11-09", "in October", "the first week of
//! November": its days 1–7), holidays ("on
//! Black Friday", "Christmas Eve": US Thanksgiving and the days after it, Christmas, New
//! Year's Eve and Day, each its last date up to today) and the period to
//! compare with ("vs the 7 days before", "month over month", "compare this week to last
//! week"). Pure rules over the tokens; the tokens it reads are marked used so they are not
//! taken for names.
//!
//! Conventions: "last week" and "last month" are the previous calendar week (Monday to
//! Sunday) and month; "past week" and "past month" are the last 7 and 30 days; periods that
//! include today end at the end of today. A date without a year is the most recent one not
//! after today.

use apogee_analytics::Period;
use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveTime, Timelike, Utc, Weekday};

use super::words::{Token, number};
use crate::plan::PlanPeriod;

/// Days a question covers when it names no period.
pub(crate) const DEFAULT_DAYS: u32 = 30;
/// Days analysed around a day a spike question names, so the day can be compared with
/// ordinary ones.
pub(crate) const DAY_WINDOW: u32 = 14;
/// Longest period a question may ask for.
const MAX_DAYS: u32 = 3_660;

/// What the question says about time.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct PeriodReading {
    /// `None`: no period named.
    pub period: Option<PlanPeriod>,
    pub compare: Option<PlanPeriod>,
    /// The question names one day ("yesterday", "on Tuesday", "on Nov 20").
    pub day: Option<NaiveDate>,
    /// The one period named, as named, when the comparison was inferred from a cue word
    /// ("support-bot versus doc-summarizer last week" compares names, not periods).
    pub named: Option<PlanPeriod>,
    /// It asks for a comparison (a cue word, or two periods), even without naming both.
    pub compares: bool,
    /// Token indexes read as time.
    pub used: Vec<usize>,
}

/// The last [`DEFAULT_DAYS`] days.
pub(crate) fn default_period(now: DateTime<Utc>) -> PlanPeriod {
    PlanPeriod::new(
        Period::last_days(now, DEFAULT_DAYS),
        format!("in the last {DEFAULT_DAYS} days"),
    )
}

/// The [`DAY_WINDOW`] days ending with `day`.
pub(crate) fn day_window(day: NaiveDate) -> PlanPeriod {
    let to = next(day);
    PlanPeriod::new(
        days(to - Duration::days(i64::from(DAY_WINDOW)), to),
        format!(
            "in the {DAY_WINDOW} days up to {}",
            weekday_name(day.weekday())
        ),
    )
}

/// `Nov 23–29`, `Oct 27 – Nov 25`, `Nov 20`; with the year when it is not `year`.
pub(crate) fn dates_label(period: &Period, year: i32) -> String {
    let first = period.from.date_naive();
    let last = (period.to - Duration::milliseconds(1))
        .date_naive()
        .max(first);
    let show_year = first.year() != year || last.year() != year;
    let day = |d: NaiveDate| format!("{} {}", d.format("%b"), d.day());
    let with_year = |d: NaiveDate| {
        if show_year {
            format!("{}, {}", day(d), d.year())
        } else {
            day(d)
        }
    };
    if first == last {
        with_year(first)
    } else if first.year() == last.year() && first.month() == last.month() && !show_year {
        format!("{}–{}", day(first), last.day())
    } else if first.year() == last.year() && first.month() == last.month() {
        format!("{}–{}, {}", day(first), last.day(), first.year())
    } else {
        format!("{} – {}", with_year(first), with_year(last))
    }
}

pub(crate) fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "Monday",
        Weekday::Tue => "Tuesday",
        Weekday::Wed => "Wednesday",
        Weekday::Thu => "Thursday",
        Weekday::Fri => "Friday",
        Weekday::Sat => "Saturday",
        Weekday::Sun => "Sunday",
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(NaiveTime::MIN).and_utc()
}

fn next(d: NaiveDate) -> NaiveDate {
    d.succ_opt().unwrap_or(d)
}

/// Whole UTC days `[from, to)`.
pub(crate) fn days(from: NaiveDate, to: NaiveDate) -> Period {
    Period::new(midnight(from), midnight(to))
}

fn first_of_month(d: NaiveDate) -> NaiveDate {
    d.with_day(1).unwrap_or(d)
}

fn add_months(d: NaiveDate, months: i32) -> NaiveDate {
    let total = d.year() * 12 + d.month0() as i32 + months;
    NaiveDate::from_ymd_opt(total.div_euclid(12), total.rem_euclid(12) as u32 + 1, 1).unwrap_or(d)
}

fn monday_of(d: NaiveDate) -> NaiveDate {
    d - Duration::days(i64::from(d.weekday().num_days_from_monday()))
}

fn quarter_start(d: NaiveDate) -> NaiveDate {
    NaiveDate::from_ymd_opt(d.year(), (d.month0() / 3) * 3 + 1, 1).unwrap_or(d)
}

fn weekday(word: &str) -> Option<Weekday> {
    let d = match word {
        "monday" | "mon" => Weekday::Mon,
        "tuesday" | "tue" | "tues" => Weekday::Tue,
        "wednesday" | "wed" => Weekday::Wed,
        "thursday" | "thu" | "thur" | "thurs" => Weekday::Thu,
        "friday" | "fri" => Weekday::Fri,
        "saturday" | "sat" => Weekday::Sat,
        "sunday" | "sun" => Weekday::Sun,
        _ => return None,
    };
    Some(d)
}

fn month(word: &str) -> Option<u32> {
    let m = match word {
        "january" | "jan" => 1,
        "february" | "feb" => 2,
        "march" | "mar" => 3,
        "april" | "apr" => 4,
        "may" => 5,
        "june" | "jun" => 6,
        "july" | "jul" => 7,
        "august" | "aug" => 8,
        "september" | "sep" | "sept" => 9,
        "october" | "oct" => 10,
        "november" | "nov" => 11,
        "december" | "dec" => 12,
        _ => return None,
    };
    Some(m)
}

fn unit_days(word: &str) -> Option<(u32, &'static str)> {
    match word {
        "day" | "days" => Some((1, "day")),
        "week" | "weeks" | "wk" | "wks" => Some((7, "week")),
        "fortnight" | "fortnights" => Some((14, "fortnight")),
        "month" | "months" => Some((30, "month")),
        "quarter" | "quarters" => Some((90, "quarter")),
        "year" | "years" => Some((365, "year")),
        _ => None,
    }
}

fn is_hours(word: &str) -> bool {
    matches!(word, "hour" | "hours" | "hr" | "hrs" | "h")
}

/// `20`, `20th`, `1st` → the day of the month.
fn day_of_month(word: &str) -> Option<u32> {
    let digits = word
        .strip_suffix("st")
        .or_else(|| word.strip_suffix("nd"))
        .or_else(|| word.strip_suffix("rd"))
        .or_else(|| word.strip_suffix("th"))
        .unwrap_or(word);
    digits.parse().ok().filter(|d| (1..=31).contains(d))
}

fn year_of(word: &str) -> Option<i32> {
    word.parse().ok().filter(|y| (2000..=2100).contains(y))
}

/// What one span of tokens says.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// A period.
    At(Period, String),
    /// One day.
    Day(NaiveDate, String),
    /// "the 7 days before", "the previous period": the period before the named one.
    Before,
    /// "month over month" and its kin.
    Over(Step),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Day,
    Week,
    Month,
    Year,
}

struct Found {
    start: usize,
    end: usize,
    kind: Kind,
}

struct Reader<'a> {
    t: &'a [Token],
    today: NaiveDate,
    now: DateTime<Utc>,
}

impl Reader<'_> {
    fn word(&self, i: usize) -> &str {
        self.t.get(i).map_or("", |t| t.lower.as_str())
    }

    fn is(&self, i: usize, words: &[&str]) -> bool {
        words.contains(&self.word(i))
    }

    fn label(&self, p: &Period) -> String {
        dates_label(p, self.today.year())
    }

    /// The most recent date with this month and day not after today (or in `year`).
    fn date(&self, m: u32, d: u32, year: Option<i32>) -> Option<NaiveDate> {
        match year {
            Some(y) => NaiveDate::from_ymd_opt(y, m, d),
            None => {
                let this = NaiveDate::from_ymd_opt(self.today.year(), m, d)?;
                if this > self.today {
                    NaiveDate::from_ymd_opt(self.today.year() - 1, m, d)
                } else {
                    Some(this)
                }
            }
        }
    }

    /// A date at `i`: `2026-11-20`, `Nov 20`, `Nov 20th 2026`, `20 Nov`, `20th of November`.
    /// Returns the date and the index after it.
    fn date_at(&self, i: usize) -> Option<(NaiveDate, usize)> {
        let w = self.word(i);
        if let Ok(d) = NaiveDate::parse_from_str(w, "%Y-%m-%d") {
            return Some((d, i + 1));
        }
        if let Some(m) = month(w)
            && let Some(d) = day_of_month(self.word(i + 1))
        {
            let year = year_of(self.word(i + 2));
            let end = i + 2 + usize::from(year.is_some());
            return Some((self.date(m, d, year)?, end));
        }
        if let Some(d) = day_of_month(w) {
            let j = if self.word(i + 1) == "of" {
                i + 2
            } else {
                i + 1
            };
            if let Some(m) = month(self.word(j)) {
                let year = year_of(self.word(j + 1));
                let end = j + 1 + usize::from(year.is_some());
                return Some((self.date(m, d, year)?, end));
            }
        }
        None
    }

    /// "the first week of November" (days 1–7, the second 8–14, …; the last: its last 7 days)
    /// at `i`, in the most recent such month not after today: the days up to the end of today,
    /// the index after its words and its text. `None` for a week still to come.
    fn week_of_month_at(&self, i: usize) -> Option<(Period, usize, String)> {
        let ordinal = self.word(i);
        let n: Option<i64> = match ordinal {
            "first" | "1st" => Some(1),
            "second" | "2nd" => Some(2),
            "third" | "3rd" => Some(3),
            "fourth" | "4th" => Some(4),
            "last" | "final" => None,
            _ => return None,
        };
        if self.word(i + 1) != "week" || self.word(i + 2) != "of" {
            return None;
        }
        let m = month(self.word(i + 3))?;
        let year = year_of(self.word(i + 4));
        let first = self.date(m, 1, year)?;
        let month_end = add_months(first, 1);
        let start = match n {
            Some(k) => first + Duration::days(7 * (k - 1)),
            None => month_end - Duration::days(7),
        };
        if start > self.today {
            return None;
        }
        let end = (start + Duration::days(7))
            .min(month_end)
            .min(next(self.today));
        let name = first.format("%B").to_string();
        let text = if first.year() == self.today.year() {
            format!("in the {ordinal} week of {name}")
        } else {
            format!("in the {ordinal} week of {name} {}", first.year())
        };
        Some((days(start, end), i + 4 + usize::from(year.is_some()), text))
    }

    /// A holiday named at `i` ("Black Friday", "Christmas Eve", "New Year's Day"): its last
    /// date up to today, the index after its words, and its name.
    fn holiday_at(&self, i: usize) -> Option<(NaiveDate, usize, &'static str)> {
        let (w, next, third) = (self.word(i), self.word(i + 1), self.word(i + 2));
        // The date of the holiday in `year`.
        type DateIn = fn(i32) -> Option<NaiveDate>;
        // US Thanksgiving: the fourth Thursday of November.
        fn thanksgiving(year: i32) -> Option<NaiveDate> {
            NaiveDate::from_weekday_of_month_opt(year, 11, Weekday::Thu, 4)
        }
        let (end, name, date_in): (usize, &'static str, DateIn) = match (w, next, third) {
            ("black", "friday", _) => (i + 2, "Black Friday", |y| thanksgiving(y)?.succ_opt()),
            ("cyber", "monday", _) => (i + 2, "Cyber Monday", |y| {
                thanksgiving(y)?.checked_add_signed(Duration::days(4))
            }),
            ("thanksgiving", _, _) => (i + 1, "Thanksgiving", thanksgiving),
            ("christmas" | "xmas", "eve", _) => (i + 2, "Christmas Eve", |y| {
                NaiveDate::from_ymd_opt(y, 12, 24)
            }),
            ("christmas" | "xmas", "day", _) => (i + 2, "Christmas Day", |y| {
                NaiveDate::from_ymd_opt(y, 12, 25)
            }),
            ("christmas" | "xmas", _, _) => (i + 1, "Christmas Day", |y| {
                NaiveDate::from_ymd_opt(y, 12, 25)
            }),
            ("new", "year" | "years", "eve") => (i + 3, "New Year's Eve", |y| {
                NaiveDate::from_ymd_opt(y, 12, 31)
            }),
            ("new", "year" | "years", "day") => (i + 3, "New Year's Day", |y| {
                NaiveDate::from_ymd_opt(y, 1, 1)
            }),
            _ => return None,
        };
        let year = self.today.year();
        let date = match date_in(year)? {
            d if d <= self.today => d,
            _ => date_in(year - 1)?,
        };
        Some((date, end, name))
    }

    /// The most recent `wd` before today (today's own weekday means a week ago).
    fn last_weekday(&self, wd: Weekday) -> NaiveDate {
        let back =
            (self.today.weekday().num_days_from_monday() + 7 - wd.num_days_from_monday()) % 7;
        let back = if back == 0 { 7 } else { back };
        self.today - Duration::days(i64::from(back))
    }

    /// The most recent `wd` on or before today ("since Monday" on a Monday is today).
    fn weekday_on_or_before(&self, wd: Weekday) -> NaiveDate {
        let back =
            (self.today.weekday().num_days_from_monday() + 7 - wd.num_days_from_monday()) % 7;
        self.today - Duration::days(i64::from(back))
    }

    fn until_today(&self, from: NaiveDate) -> Period {
        days(from.min(self.today), next(self.today))
    }

    fn rolling(&self, n: u32, unit: (u32, &str)) -> Kind {
        let total = n.saturating_mul(unit.0).clamp(1, MAX_DAYS);
        let text = if n == 1 {
            format!("in the last {}", unit.1)
        } else {
            format!("in the last {n} {}s", unit.1)
        };
        Kind::At(Period::last_days(self.now, total), text)
    }

    /// "the last 24 hours": whole UTC hours up to the end of the current one (the figures
    /// stay exact: the query engine reads whole hours from the rollups).
    fn rolling_hours(&self, n: u32) -> Kind {
        let hours = n.clamp(1, MAX_DAYS.saturating_mul(24));
        let this_hour = self
            .now
            .date_naive()
            .and_hms_opt(self.now.hour(), 0, 0)
            .map_or(self.now, |t| t.and_utc());
        let end = this_hour + Duration::hours(1);
        let text = if hours == 1 {
            "in the last hour".to_string()
        } else {
            format!("in the last {hours} hours")
        };
        Kind::At(
            Period::new(end - Duration::hours(i64::from(hours)), end),
            text,
        )
    }

    /// The expression starting at token `i`, if any.
    fn at(&self, i: usize) -> Option<Found> {
        let w = self.word(i);
        let found = |end: usize, kind: Kind| {
            Some(Found {
                start: i,
                end,
                kind,
            })
        };
        if let Some((p, end, text)) = self.week_of_month_at(i) {
            return found(end, Kind::At(p, text));
        }
        // Comparison steps.
        for (words, step) in [
            (&["month", "over", "month"][..], Step::Month),
            (&["month", "on", "month"], Step::Month),
            (&["week", "over", "week"], Step::Week),
            (&["week", "on", "week"], Step::Week),
            (&["year", "over", "year"], Step::Year),
            (&["year", "on", "year"], Step::Year),
            (&["day", "over", "day"], Step::Day),
        ] {
            if (0..words.len()).all(|k| self.word(i + k) == words[k]) {
                return found(i + words.len(), Kind::Over(step));
            }
        }
        let step = match w {
            "month-over-month" | "month-on-month" | "mom" | "m/m" => Some(Step::Month),
            "week-over-week" | "week-on-week" | "wow" | "w/w" => Some(Step::Week),
            "year-over-year" | "year-on-year" | "yoy" | "y/y" => Some(Step::Year),
            "day-over-day" | "dod" => Some(Step::Day),
            _ => None,
        };
        if let Some(step) = step {
            return found(i + 1, Kind::Over(step));
        }
        // "the 7 days before", "the previous 7 days", "the week before", "the prior period".
        let day_before_yesterday = |k: usize| {
            self.word(k) == "day" && self.word(k + 1) == "before" && self.word(k + 2) == "yesterday"
        };
        if !day_before_yesterday(i) && !day_before_yesterday(i + 1) {
            let mut j = i;
            if self.word(j) == "the" {
                j += 1;
            }
            let lead = self.is(j, &["previous", "prior", "preceding"]);
            if lead {
                j += 1;
            }
            let n = number(self.word(j));
            if n.is_some() {
                j += 1;
            }
            let unit = unit_days(self.word(j)).is_some() || self.is(j, &["period", "periods"]);
            if unit {
                let after = self.is(j + 1, &["before", "prior", "earlier", "ago"]);
                let period_word = self.is(j, &["period", "periods"]);
                if after {
                    return found(j + 2, Kind::Before);
                }
                if lead && (period_word || n.is_some()) {
                    return found(j + 1, Kind::Before);
                }
            }
            if self.word(i) == "before" && self.word(i + 1) == "that" {
                return found(i + 2, Kind::Before);
            }
        }
        // "between D1 and D2", "from D1 to D2", "D1 to D2".
        {
            let j = if self.is(i, &["between", "from"]) {
                i + 1
            } else {
                i
            };
            if let Some((a, k)) = self.date_at(j)
                && self.is(k, &["and", "to", "until", "till", "through", "thru", "-"])
            {
                // "Nov 2 to 9": the second date may omit the month.
                let second = self.date_at(k + 1).or_else(|| {
                    day_of_month(self.word(k + 1))
                        .and_then(|d| NaiveDate::from_ymd_opt(a.year(), a.month(), d))
                        .map(|d| (d, k + 2))
                });
                if let Some((b, end)) = second {
                    let (a, b) = (a.min(b), a.max(b));
                    let p = days(a, next(b));
                    return found(end, Kind::At(p, format!("over {}", self.label(&p))));
                }
            }
        }
        // "since D", "since Monday", "since yesterday", "since the start of the month".
        if w == "since" {
            if let Some((d, end)) = self.date_at(i + 1) {
                let p = self.until_today(d);
                return found(
                    end,
                    Kind::At(p, format!("since {}", self.label(&days(d, next(d))))),
                );
            }
            if let Some(wd) = weekday(self.word(i + 1)) {
                let d = self.weekday_on_or_before(wd);
                return found(
                    i + 2,
                    Kind::At(self.until_today(d), format!("since {}", weekday_name(wd))),
                );
            }
            if self.word(i + 1) == "yesterday" {
                let d = self.today.pred_opt().unwrap_or(self.today);
                return found(
                    i + 2,
                    Kind::At(self.until_today(d), "since yesterday".into()),
                );
            }
            let mut j = i + 1;
            if self.word(j) == "the" {
                j += 1;
            }
            if self.is(j, &["start", "beginning"]) && self.word(j + 1) == "of" {
                let k = if self.word(j + 2) == "the" {
                    j + 3
                } else {
                    j + 2
                };
                let from = match self.word(k) {
                    "month" => Some(first_of_month(self.today)),
                    "week" => Some(monday_of(self.today)),
                    "year" => NaiveDate::from_ymd_opt(self.today.year(), 1, 1),
                    "quarter" => Some(quarter_start(self.today)),
                    _ => None,
                };
                if let Some(from) = from {
                    return found(
                        k + 1,
                        Kind::At(
                            self.until_today(from),
                            format!("since the start of the {}", self.word(k)),
                        ),
                    );
                }
            }
            if let Some(m) = month(self.word(i + 1)) {
                let d = self.date(m, 1, year_of(self.word(i + 2)))?;
                return found(
                    i + 2 + usize::from(year_of(self.word(i + 2)).is_some()),
                    Kind::At(self.until_today(d), format!("since {}", d.format("%B %-d"))),
                );
            }
        }
        // "last 14 days", "in the past 3 weeks", "previous 2 months", "the last few days".
        if self.is(i, &["last", "past", "previous", "prior", "recent"]) {
            let n = number(self.word(i + 1)).or_else(|| match self.word(i + 1) {
                "few" => Some(3),
                "couple" => Some(2),
                _ => None,
            });
            if let Some(n) = n {
                let j = if self.word(i + 2) == "of" {
                    i + 3
                } else {
                    i + 2
                };
                if let Some(unit) = unit_days(self.word(j)) {
                    return found(j + 1, self.rolling(n, unit));
                }
                if is_hours(self.word(j)) {
                    return found(j + 1, self.rolling_hours(n));
                }
            }
            let rolling = self.is(i, &["past", "recent"]);
            match self.word(i + 1) {
                "hour" => return found(i + 2, self.rolling_hours(1)),
                "week" if rolling => return found(i + 2, self.rolling(1, (7, "week"))),
                "week" => {
                    let monday = monday_of(self.today) - Duration::days(7);
                    let p = days(monday, monday + Duration::days(7));
                    return found(i + 2, Kind::At(p, "last week".into()));
                }
                "fortnight" => return found(i + 2, self.rolling(1, (14, "fortnight"))),
                "month" if rolling => return found(i + 2, self.rolling(1, (30, "month"))),
                "month" => {
                    let this = first_of_month(self.today);
                    let p = days(add_months(this, -1), this);
                    return found(i + 2, Kind::At(p, "last month".into()));
                }
                "quarter" if rolling => return found(i + 2, self.rolling(1, (90, "quarter"))),
                "quarter" => {
                    let this = quarter_start(self.today);
                    let p = days(add_months(this, -3), this);
                    return found(i + 2, Kind::At(p, "last quarter".into()));
                }
                "year" if rolling => return found(i + 2, self.rolling(1, (365, "year"))),
                "year" => {
                    let y = self.today.year() - 1;
                    let p = days(
                        NaiveDate::from_ymd_opt(y, 1, 1)?,
                        NaiveDate::from_ymd_opt(y + 1, 1, 1)?,
                    );
                    return found(i + 2, Kind::At(p, format!("in {y}")));
                }
                "weekend" => {
                    let sat = self.last_weekday(Weekday::Sat);
                    let sat = if sat + Duration::days(1) >= self.today {
                        sat - Duration::days(7)
                    } else {
                        sat
                    };
                    let p = days(sat, sat + Duration::days(2));
                    return found(i + 2, Kind::At(p, "last weekend".into()));
                }
                other => {
                    if let Some(wd) = weekday(other) {
                        let d = self.last_weekday(wd);
                        return found(i + 2, Kind::Day(d, format!("last {}", weekday_name(wd))));
                    }
                }
            }
        }
        // "24 hours" (without "last"): the last ones.
        if let Some(n) = number(w)
            && is_hours(self.word(i + 1))
            && !self.is(i + 2, &["before", "prior", "earlier", "ago"])
        {
            return found(i + 2, self.rolling_hours(n));
        }
        // "14 days", "3 weeks" (without "last"): the last ones.
        if let Some(n) = number(w)
            && let Some(unit) = unit_days(self.word(i + 1))
            && !self.is(i + 2, &["before", "prior", "earlier", "ago"])
            && i.checked_sub(1)
                .is_none_or(|p| !self.is(p, &["first", "next", "top", "bottom"]))
        {
            return found(i + 2, self.rolling(n, unit));
        }
        // "this week", "so far this month", "month to date", "ytd".
        if w == "this" || w == "current" {
            let from = match self.word(i + 1) {
                "week" => Some(monday_of(self.today)),
                "month" => Some(first_of_month(self.today)),
                "quarter" => Some(quarter_start(self.today)),
                "year" => NaiveDate::from_ymd_opt(self.today.year(), 1, 1),
                _ => None,
            };
            if let Some(from) = from {
                let unit = self.word(i + 1).to_string();
                let mut end = i + 2;
                if self.word(end) == "so" && self.word(end + 1) == "far" {
                    end += 2;
                }
                return found(
                    end,
                    Kind::At(self.until_today(from), format!("this {unit}")),
                );
            }
            if let Some(wd) = weekday(self.word(i + 1)) {
                let d = self.weekday_on_or_before(wd);
                return found(i + 2, Kind::Day(d, format!("on {}", weekday_name(wd))));
            }
        }
        for (words, from, text) in [
            (
                &["month", "to", "date"][..],
                first_of_month(self.today),
                "this month",
            ),
            (&["week", "to", "date"], monday_of(self.today), "this week"),
            (
                &["year", "to", "date"],
                NaiveDate::from_ymd_opt(self.today.year(), 1, 1).unwrap_or(self.today),
                "this year",
            ),
        ] {
            if (0..words.len()).all(|k| self.word(i + k) == words[k]) {
                return found(
                    i + words.len(),
                    Kind::At(self.until_today(from), text.into()),
                );
            }
        }
        match w {
            "mtd" | "month-to-date" => {
                return found(
                    i + 1,
                    Kind::At(
                        self.until_today(first_of_month(self.today)),
                        "this month".into(),
                    ),
                );
            }
            "ytd" | "year-to-date" => {
                let jan1 = NaiveDate::from_ymd_opt(self.today.year(), 1, 1)?;
                return found(i + 1, Kind::At(self.until_today(jan1), "this year".into()));
            }
            "wtd" | "week-to-date" => {
                return found(
                    i + 1,
                    Kind::At(self.until_today(monday_of(self.today)), "this week".into()),
                );
            }
            "today" => return found(i + 1, Kind::Day(self.today, "today".into())),
            "yesterday" => {
                let d = self.today.pred_opt()?;
                return found(i + 1, Kind::Day(d, "yesterday".into()));
            }
            "day" if self.word(i + 1) == "before" && self.word(i + 2) == "yesterday" => {
                let d = self.today - Duration::days(2);
                return found(i + 3, Kind::Day(d, "the day before yesterday".into()));
            }
            _ => {}
        }
        if let Some((d, end, name)) = self.holiday_at(i) {
            return found(end, Kind::Day(d, format!("on {name}")));
        }
        // A date, a month, a weekday.
        if let Some((d, end)) = self.date_at(i) {
            return found(
                end,
                Kind::Day(d, format!("on {}", self.label(&days(d, next(d))))),
            );
        }
        if let Some(m) = month(w) {
            // "may" is also a verb: a month only when next to a year or after in/for/during.
            let year = year_of(self.word(i + 1));
            let led = i.checked_sub(1).is_some_and(|p| {
                self.is(
                    p,
                    &[
                        "in", "for", "during", "of", "since", "vs", "versus", "and", "to",
                    ],
                )
            });
            if w != "may" || year.is_some() || led {
                let first = self.date(m, 1, year)?;
                let p = days(first, add_months(first, 1));
                let name = first.format("%B").to_string();
                let text = if first.year() == self.today.year() {
                    format!("in {name}")
                } else {
                    format!("in {name} {}", first.year())
                };
                return found(i + 1 + usize::from(year.is_some()), Kind::At(p, text));
            }
        }
        if let Some(wd) = weekday(w) {
            let d = self.last_weekday(wd);
            return found(i + 1, Kind::Day(d, format!("on {}", weekday_name(wd))));
        }
        None
    }
}

/// Words that ask for a comparison.
const COMPARE_CUES: &[&str] = &[
    "compare",
    "compared",
    "comparing",
    "comparison",
    "vs",
    "versus",
    "against",
    "relative",
];

pub(crate) fn read(tokens: &[Token], now: DateTime<Utc>) -> PeriodReading {
    let r = Reader {
        t: tokens,
        today: now.date_naive(),
        now,
    };
    let mut found: Vec<Found> = Vec::new();
    let mut i = 0;
    while i < tokens.len() {
        if tokens[i].quoted {
            i += 1;
            continue;
        }
        match r.at(i) {
            Some(f) if f.end > i => {
                i = f.end;
                found.push(f);
            }
            _ => i += 1,
        }
    }
    // "Did we spend more than last month?": a period after "more/less than" is compared with.
    let than_period = found.iter().any(|f| {
        let mut k = f.start;
        if k > 0 && r.word(k - 1) == "the" {
            k -= 1;
        }
        k >= 2
            && r.word(k - 1) == "than"
            && r.is(
                k - 2,
                &[
                    "more", "less", "higher", "lower", "bigger", "smaller", "fewer",
                ],
            )
    });
    let mut out = PeriodReading {
        compares: than_period
            || tokens
                .iter()
                .any(|t| COMPARE_CUES.contains(&t.lower.as_str())),
        ..PeriodReading::default()
    };
    for f in &found {
        out.used.extend(f.start..f.end);
        // A lead-in word ("in the last 7 days", "on Tuesday", "for October") is time too.
        let mut k = f.start;
        while k > 0
            && r.is(
                k - 1,
                &[
                    "in", "on", "for", "during", "over", "the", "of", "within", "from",
                ],
            )
        {
            k -= 1;
            out.used.push(k);
        }
    }
    let mut periods: Vec<(PlanPeriod, Option<NaiveDate>)> = Vec::new();
    let mut before = false;
    let mut over = None;
    for f in found {
        match f.kind {
            Kind::At(p, text) => periods.push((PlanPeriod::new(p, text), None)),
            Kind::Day(d, text) => periods.push((PlanPeriod::new(days(d, next(d)), text), Some(d))),
            Kind::Before => before = true,
            Kind::Over(step) => over = Some(step),
        }
    }
    out.compares |= before || over.is_some() || periods.len() > 1;
    if let Some(step) = over {
        let (p, c) = over_periods(&r, step, periods.first().map(|p| &p.0));
        out.period = Some(p);
        out.compare = Some(c);
        return out;
    }
    match periods.len() {
        0 => {}
        1 => {
            let (p, day) = periods.remove(0);
            out.day = day;
            if before {
                out.compare = Some(previous_of(&p));
                out.period = Some(p);
            } else if out.compares {
                out.named = Some(p.clone());
                // "How does spend compare to last week?": the current one against it.
                match current_of(&r, &p) {
                    Some(current) => {
                        out.compare = Some(p);
                        out.period = Some(current);
                        out.day = None;
                    }
                    None => {
                        out.compare = Some(previous_of(&p));
                        out.period = Some(p);
                    }
                }
            } else {
                out.period = Some(p);
            }
        }
        _ => {
            // The later period is the one asked about; the earlier the baseline.
            periods.sort_by_key(|(p, _)| std::cmp::Reverse(p.from));
            let (p, day) = periods.remove(0);
            let (c, _) = periods.remove(0);
            out.day = day;
            out.compare = Some(if c == p { previous_of(&p) } else { c });
            out.period = Some(p);
        }
    }
    out
}

/// The period before `p`: the calendar month before a whole month, the week before a whole
/// week (Monday to Sunday), otherwise the same length right before it.
pub(crate) fn previous_of(p: &PlanPeriod) -> PlanPeriod {
    let from = p.from.date_naive();
    let to = p.to.date_naive();
    let midnights = p.from == midnight(from) && p.to == midnight(to);
    if midnights && from.day() == 1 && to == add_months(from, 1) {
        return PlanPeriod::new(days(add_months(from, -1), from), "the month before");
    }
    let prev = p.period().previous();
    let days = (prev.to - prev.from).num_days();
    let text = match days {
        1 => "the day before".to_string(),
        7 => "the 7 days before".to_string(),
        n => format!("the {n} days before"),
    };
    PlanPeriod::new(prev, text)
}

/// For "vs last week" alone: the current period of the same kind ("this week"), if `p` is a
/// "last" calendar period or yesterday.
fn current_of(r: &Reader<'_>, p: &PlanPeriod) -> Option<PlanPeriod> {
    let today = r.today;
    let current = match p.text.as_str() {
        "last week" => (monday_of(today), "this week"),
        "last month" => (first_of_month(today), "this month"),
        "last quarter" => (quarter_start(today), "this quarter"),
        "yesterday" => (today, "today"),
        t if t.starts_with("in ") && p.from.year() == today.year() - 1 && p.to.month() == 1 => {
            (NaiveDate::from_ymd_opt(today.year(), 1, 1)?, "this year")
        }
        _ => return None,
    };
    Some(PlanPeriod::new(r.until_today(current.0), current.1))
}

/// The periods of "month over month" and its kin: the named period (or the current one) and
/// the one a step before it, over the same days.
fn over_periods(
    r: &Reader<'_>,
    step: Step,
    named: Option<&PlanPeriod>,
) -> (PlanPeriod, PlanPeriod) {
    let today = r.today;
    match step {
        Step::Day => {
            let p = named.cloned().unwrap_or_else(|| {
                let d = today.pred_opt().unwrap_or(today);
                PlanPeriod::new(days(d, next(d)), "yesterday")
            });
            let c = previous_of(&p);
            (p, c)
        }
        Step::Week => {
            let p = named.cloned().unwrap_or_else(|| {
                PlanPeriod::new(Period::last_days(r.now, 7), "in the last 7 days")
            });
            let c = previous_of(&p);
            (p, c)
        }
        Step::Month | Step::Year => {
            let months = if step == Step::Month { 1 } else { 12 };
            let unit = if step == Step::Month { "month" } else { "year" };
            let p = named.cloned().unwrap_or_else(|| {
                let from = if step == Step::Month {
                    first_of_month(today)
                } else {
                    NaiveDate::from_ymd_opt(today.year(), 1, 1).unwrap_or(today)
                };
                PlanPeriod::new(r.until_today(from), format!("this {unit} so far"))
            });
            let from = p.from.date_naive();
            let to = p.to.date_naive();
            let whole = from.day() == 1 && to == add_months(from, months);
            let c = if whole {
                PlanPeriod::new(
                    days(add_months(from, -months), from),
                    format!("the {unit} before"),
                )
            } else {
                // The same days a step earlier, kept within that earlier month or year.
                let start = first_of_month(from);
                let c_from = add_months(start, -months) + (from - start);
                let c_to = (c_from + (to - from)).min(add_months(start, -months + months));
                let c_to = if step == Step::Year {
                    to.with_year(to.year() - 1).unwrap_or(c_to)
                } else {
                    c_to
                };
                PlanPeriod::new(
                    days(c_from, c_to.max(c_from)),
                    format!("the same days of the {unit} before"),
                )
            };
            (p, c)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::question::words::tokens;
    use chrono::TimeZone;

    /// A Wednesday afternoon.
    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 25, 15, 30, 0).unwrap()
    }

    fn span(p: &PlanPeriod) -> String {
        let last = (p.to - Duration::milliseconds(1)).date_naive();
        format!("{}..{}", p.from.date_naive(), last)
    }

    fn period(q: &str) -> String {
        let r = read(&tokens(q), now());
        r.period.as_ref().map_or("-".into(), span)
    }

    fn compare(q: &str) -> (String, String) {
        let r = read(&tokens(q), now());
        (
            r.period.as_ref().map_or("-".into(), span),
            r.compare.as_ref().map_or("-".into(), span),
        )
    }

    #[test]
    fn a_week_of_a_month_is_its_seven_days() {
        let cases = [
            (
                "How much did we spend in the first week of November?",
                "2026-11-01..2026-11-07",
            ),
            ("the second week of october", "2026-10-08..2026-10-14"),
            (
                "spend in the last week of October",
                "2026-10-25..2026-10-31",
            ),
            // This month's last week has not ended: up to today.
            (
                "calls in the last week of November",
                "2026-11-24..2026-11-25",
            ),
            ("the 1st week of Feb 2026", "2026-02-01..2026-02-07"),
        ];
        for (q, want) in cases {
            assert_eq!(period(q), want, "{q}");
        }
        assert_eq!(
            read(&tokens("the third week of October"), now())
                .period
                .map(|p| p.text)
                .as_deref(),
            Some("in the third week of October")
        );
    }

    #[test]
    fn holidays_are_their_last_day_up_to_today() {
        let cases = [
            // Thanksgiving 2026 is tomorrow (the 26th): last year's, and the days after it.
            ("calls on Black Friday", "2025-11-28..2025-11-28"),
            ("cyber monday spend", "2025-12-01..2025-12-01"),
            (
                "what did we spend on thanksgiving",
                "2025-11-27..2025-11-27",
            ),
            ("spend on christmas eve", "2025-12-24..2025-12-24"),
            ("xmas", "2025-12-25..2025-12-25"),
            ("new year's eve", "2025-12-31..2025-12-31"),
            ("New Years Day", "2026-01-01..2026-01-01"),
        ];
        for (q, want) in cases {
            assert_eq!(period(q), want, "{q}");
        }
        // Once it has passed, this year's.
        let december = Utc.with_ymd_and_hms(2026, 12, 2, 9, 0, 0).unwrap();
        let r = read(
            &tokens("How many calls did we make on Black Friday?"),
            december,
        );
        let p = r.period.as_ref().map(span);
        assert_eq!(p.as_deref(), Some("2026-11-27..2026-11-27"));
        assert_eq!(r.period.map(|p| p.text).as_deref(), Some("on Black Friday"));
    }

    #[test]
    fn relative_and_absolute_periods() {
        let cases = [
            ("costs over the last 7 days", "2026-11-19..2026-11-25"),
            ("spend in the past 14 days", "2026-11-12..2026-11-25"),
            ("in the last 3 weeks", "2026-11-05..2026-11-25"),
            ("past week", "2026-11-19..2026-11-25"),
            ("last week", "2026-11-16..2026-11-22"),
            ("this week", "2026-11-23..2026-11-25"),
            ("this month", "2026-11-01..2026-11-25"),
            ("month to date spend", "2026-11-01..2026-11-25"),
            ("last month", "2026-10-01..2026-10-31"),
            ("past month", "2026-10-27..2026-11-25"),
            ("yesterday's costs", "2026-11-24..2026-11-24"),
            ("today", "2026-11-25..2026-11-25"),
            ("since Monday", "2026-11-23..2026-11-25"),
            ("since wednesday", "2026-11-25..2026-11-25"),
            ("since Nov 1", "2026-11-01..2026-11-25"),
            (
                "between 2026-11-02 and 2026-11-09",
                "2026-11-02..2026-11-09",
            ),
            ("from Nov 2 to Nov 9", "2026-11-02..2026-11-09"),
            ("from nov 2 to 9", "2026-11-02..2026-11-09"),
            ("on Nov 20", "2026-11-20..2026-11-20"),
            ("on November 20th", "2026-11-20..2026-11-20"),
            ("20 Nov", "2026-11-20..2026-11-20"),
            ("on 2026-11-20", "2026-11-20..2026-11-20"),
            ("Dec 24", "2025-12-24..2025-12-24"),
            ("in October", "2026-10-01..2026-10-31"),
            ("October 2025", "2025-10-01..2025-10-31"),
            ("on Tuesday", "2026-11-24..2026-11-24"),
            ("on wednesday", "2026-11-18..2026-11-18"),
            ("last year", "2025-01-01..2025-12-31"),
            ("this year", "2026-01-01..2026-11-25"),
            ("last quarter", "2026-07-01..2026-09-30"),
            ("this quarter", "2026-10-01..2026-11-25"),
            ("last weekend", "2026-11-21..2026-11-22"),
            ("the last few days", "2026-11-23..2026-11-25"),
            ("what may we do", "-"),
            ("in May", "2026-05-01..2026-05-31"),
            ("top 5 users", "-"),
            ("Analyze my AI costs", "-"),
        ];
        for (q, want) in cases {
            assert_eq!(period(q), want, "{q:?}");
        }
    }

    /// Hours are whole UTC hours up to the end of the current one (now is 15:30).
    #[test]
    fn the_last_hours() {
        let at = |h: u32| {
            Utc.with_ymd_and_hms(2026, 11, 24 + h / 24, h % 24, 0, 0)
                .unwrap()
        };
        for (q, from, to, text) in [
            (
                "spend in the last 24 hours",
                at(16),
                at(40),
                "in the last 24 hours",
            ),
            ("past 3 hrs", at(37), at(40), "in the last 3 hours"),
            (
                "gpt-4o in the past hour",
                at(39),
                at(40),
                "in the last hour",
            ),
            (
                "48 hours",
                at(16) - Duration::days(1),
                at(40),
                "in the last 48 hours",
            ),
        ] {
            let r = read(&tokens(q), now());
            let p = r.period.unwrap_or_else(|| panic!("{q:?}: no period"));
            assert_eq!((p.from, p.to, p.text.as_str()), (from, to, text), "{q:?}");
        }
    }

    #[test]
    fn comparisons() {
        let cases = [
            (
                "Compare this week to last week",
                ("2026-11-23..2026-11-25", "2026-11-16..2026-11-22"),
            ),
            (
                "last week vs this week",
                ("2026-11-23..2026-11-25", "2026-11-16..2026-11-22"),
            ),
            (
                "spend in the last 7 days vs the 7 days before",
                ("2026-11-19..2026-11-25", "2026-11-12..2026-11-18"),
            ),
            (
                "last 7 days compared to the previous 7 days",
                ("2026-11-19..2026-11-25", "2026-11-12..2026-11-18"),
            ),
            (
                "month over month",
                ("2026-11-01..2026-11-25", "2026-10-01..2026-10-25"),
            ),
            (
                "how does spend compare to last week",
                ("2026-11-23..2026-11-25", "2026-11-16..2026-11-22"),
            ),
            (
                "this month vs last month",
                ("2026-11-01..2026-11-25", "2026-10-01..2026-10-31"),
            ),
            (
                "week over week",
                ("2026-11-19..2026-11-25", "2026-11-12..2026-11-18"),
            ),
            (
                "October vs September",
                ("2026-10-01..2026-10-31", "2026-09-01..2026-09-30"),
            ),
        ];
        for (q, (p, c)) in cases {
            assert_eq!(compare(q), (p.to_string(), c.to_string()), "{q:?}");
        }
    }

    #[test]
    fn labels() {
        let p = |a: &str, b: &str| days(a.parse().unwrap(), b.parse().unwrap());
        assert_eq!(
            dates_label(&p("2026-11-23", "2026-11-30"), 2026),
            "Nov 23–29"
        );
        assert_eq!(
            dates_label(&p("2026-10-27", "2026-11-26"), 2026),
            "Oct 27 – Nov 25"
        );
        assert_eq!(dates_label(&p("2026-11-20", "2026-11-21"), 2026), "Nov 20");
        assert_eq!(
            dates_label(&p("2025-12-29", "2026-01-05"), 2026),
            "Dec 29, 2025 – Jan 4, 2026"
        );
    }
}
