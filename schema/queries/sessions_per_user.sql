-- name: sessions_per_user
-- title: Sessions per identified user
-- answers: Identified users (keyed hash of the site's user id) by sessions in the range, with their page views.
-- params: site String, from Date, to Date, limit UInt32
-- columns: user_id, sessions, pageviews
-- source: sessions (materialised view)
SELECT user_id, count() AS sessions, sum(pv) AS pageviews
FROM
(
    SELECT session_id, maxMerge(user_id) AS user_id, uniqExactIfMerge(pageviews) AS pv
    FROM session_states
    WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY session_id
)
WHERE user_id != ''
GROUP BY user_id
ORDER BY sessions DESC, pageviews DESC, user_id
LIMIT {limit:UInt32}
