-- name: session_breakdown
-- answers: Recomputes one site's day in session_breakdown: sessions begun that day by entry page, exit page, referrer and channel.
-- params: site String, day Date, version UInt64
-- Channels: Paid (utm_medium cpc, ppc, paid...), Email (utm_medium or utm_source email/newsletter),
-- Direct (no referrer), Internal (referrer is the site's own host), Search, Social (known hosts or
-- utm_medium social), otherwise Referral.
INSERT INTO session_breakdown
SELECT {site:String}, {day:Date}, {version:UInt64}, dimension, value, count() AS sessions, countIf(pv <= 1) AS bounces
FROM
(
    SELECT pv, entry, exit_, ref,
        multiIf(
            lower(medium) IN ('cpc', 'ppc', 'paid', 'paidsearch', 'paid_search', 'cpm', 'cpv', 'display', 'banner', 'paid_social'), 'Paid',
            lower(medium) IN ('email', 'e-mail', 'e_mail', 'newsletter') OR lower(source) IN ('email', 'newsletter'), 'Email',
            ref = '', 'Direct',
            ref = entry_host, 'Internal',
            match(ref, '(^|\\.)(google|bing|yandex|duckduckgo|yahoo|baidu|ecosia|naver|seznam|mail\\.ru|ask|qwant|startpage|brave)\\.'), 'Search',
            match(ref, '(^|\\.)(facebook|fb|instagram|twitter|x|t|vk|ok|linkedin|lnkd|youtube|tiktok|telegram|t\\.me|pinterest|reddit|threads|whatsapp)\\.[a-z]+$') OR lower(medium) = 'social', 'Social',
            'Referral') AS channel
    FROM
    (
        SELECT min(day) AS first_day, uniqExactIfMerge(pageviews) AS pv,
               argMinIfMerge(entry_path) AS entry, argMaxIfMerge(exit_path) AS exit_,
               argMinIfMerge(entry_referrer_host) AS ref, argMinIfMerge(entry_host) AS entry_host,
               argMinIfMerge(entry_utm_medium) AS medium, argMinIfMerge(entry_utm_source) AS source
        FROM session_states
        WHERE site = {site:String} AND day >= {day:Date} - 1 AND day <= {day:Date} + 1
        GROUP BY session_id
    )
    WHERE first_day = {day:Date} AND pv > 0
)
ARRAY JOIN
    ['entry', 'exit', 'referrer', 'channel'] AS dimension,
    [entry, exit_, concat(ref, '\t', channel), channel] AS value
GROUP BY dimension, value
