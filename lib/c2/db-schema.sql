-- Schema that C2 v0.0.0-20190913090940-33c5be11fcd2 (github.com/teserakt-io/c2) creates with gorm AutoMigrate
-- on an empty PostgreSQL database. Captured by lib/c2/db-schema.ts dumpSchema (pg_dump --schema-only
-- --no-owner --no-privileges); test/c2/c2-server.test.ts checks that a fresh C2 still creates exactly this.
--
-- PostgreSQL database dump
--


-- Dumped from database version 15.20 (Debian 15.20-0+deb12u1)
-- Dumped by pg_dump version 15.20 (Debian 15.20-0+deb12u1)

SET statement_timeout = 0;
SET lock_timeout = 0;
SET idle_in_transaction_session_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;
SET xmloption = content;
SET client_min_messages = warning;
SET row_security = off;

SET default_tablespace = '';

SET default_table_access_method = heap;

--
-- Name: clients; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.clients (
    id integer NOT NULL,
    e4_id bytea NOT NULL,
    name character varying(256) NOT NULL,
    key bytea NOT NULL
);


--
-- Name: clients_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.clients_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: clients_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.clients_id_seq OWNED BY public.clients.id;


--
-- Name: clients_topickeys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.clients_topickeys (
    client_id integer NOT NULL,
    topic_key_id integer NOT NULL
);


--
-- Name: topic_keys; Type: TABLE; Schema: public; Owner: -
--

CREATE TABLE public.topic_keys (
    id integer NOT NULL,
    topic text NOT NULL,
    key bytea NOT NULL
);


--
-- Name: topic_keys_id_seq; Type: SEQUENCE; Schema: public; Owner: -
--

CREATE SEQUENCE public.topic_keys_id_seq
    AS integer
    START WITH 1
    INCREMENT BY 1
    NO MINVALUE
    NO MAXVALUE
    CACHE 1;


--
-- Name: topic_keys_id_seq; Type: SEQUENCE OWNED BY; Schema: public; Owner: -
--

ALTER SEQUENCE public.topic_keys_id_seq OWNED BY public.topic_keys.id;


--
-- Name: clients id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clients ALTER COLUMN id SET DEFAULT nextval('public.clients_id_seq'::regclass);


--
-- Name: topic_keys id; Type: DEFAULT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.topic_keys ALTER COLUMN id SET DEFAULT nextval('public.topic_keys_id_seq'::regclass);


--
-- Name: clients clients_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clients
    ADD CONSTRAINT clients_pkey PRIMARY KEY (id);


--
-- Name: clients_topickeys clients_topickeys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clients_topickeys
    ADD CONSTRAINT clients_topickeys_pkey PRIMARY KEY (client_id, topic_key_id);


--
-- Name: topic_keys topic_keys_pkey; Type: CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.topic_keys
    ADD CONSTRAINT topic_keys_pkey PRIMARY KEY (id);


--
-- Name: uix_clients_e4_id; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX uix_clients_e4_id ON public.clients USING btree (e4_id);


--
-- Name: uix_clients_name; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX uix_clients_name ON public.clients USING btree (name);


--
-- Name: uix_topic_keys_topic; Type: INDEX; Schema: public; Owner: -
--

CREATE UNIQUE INDEX uix_topic_keys_topic ON public.topic_keys USING btree (topic);


--
-- Name: clients_topickeys clients_topickeys_client_fk; Type: FK CONSTRAINT; Schema: public; Owner: -
--

ALTER TABLE ONLY public.clients_topickeys
    ADD CONSTRAINT clients_topickeys_client_fk FOREIGN KEY (client_id) REFERENCES public.clients(id) ON DELETE CASCADE;


--
-- PostgreSQL database dump complete
--


