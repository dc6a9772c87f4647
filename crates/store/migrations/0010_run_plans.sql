-- Apogee schema v10: the question plan a run leaves for the next question of its thread, so
-- a follow-up ("and last month?") refines it. JSON (apogee_agents::QuestionPlan), or NULL for
-- runs stored before this migration and runs that ended before they had a plan. Written in
-- the SQL common to SQLite and PostgreSQL.

ALTER TABLE runs ADD COLUMN plan TEXT;
CREATE INDEX runs_by_thread ON runs (thread_id, started_at);
