-- name: automation
-- title: Automation
-- answers: How many events came from automated browsers ("any": webdriver, headless or automation signals from the browser, or server-side inconsistencies), then each signal, with its share of all events in the range.
-- params: site String, from Date, to Date, limit UInt32
-- columns: signal, events, share
-- source: daily_breakdown (rollup job)
SELECT signal, events, round(events / greatest(total, 1), 4) AS share
FROM
(
    SELECT value AS signal, sum(events) AS events
    FROM daily_breakdown
    WHERE site = {site:String} AND dimension = 'automation_signal' AND day >= {from:Date} AND day <= {to:Date}
      AND (site, day, version) GLOBAL IN
      (
          SELECT site, day, max(version) FROM daily_breakdown
          WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
          GROUP BY site, day
      )
    GROUP BY value
) AS signals
CROSS JOIN
(
    -- Every event has exactly one `country` row (possibly empty), so this is all events.
    SELECT sum(events) AS total
    FROM daily_breakdown
    WHERE site = {site:String} AND dimension = 'country' AND day >= {from:Date} AND day <= {to:Date}
      AND (site, day, version) GLOBAL IN
      (
          SELECT site, day, max(version) FROM daily_breakdown
          WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
          GROUP BY site, day
      )
) AS everything
ORDER BY signal = 'any' DESC, events DESC, signal
LIMIT {limit:UInt32}
