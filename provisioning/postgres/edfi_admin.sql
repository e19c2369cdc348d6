-- The EdFi_Admin tables that registration writes, in the shape of ODS/API
-- 7.x (internal/testenv/testdata/edfi_admin_pg.sql), made idempotent so that
-- `instancemgr setup` and `dev` can run it on every start.
CREATE SCHEMA IF NOT EXISTS dbo;

CREATE TABLE IF NOT EXISTS dbo.odsinstances (
    odsinstanceid    serial       NOT NULL,
    name             varchar(100) NOT NULL,
    instancetype     varchar(100),
    connectionstring varchar(1500),
    CONSTRAINT odsinstances_pk PRIMARY KEY (odsinstanceid)
);
CREATE UNIQUE INDEX IF NOT EXISTS ux_name_instancetype ON dbo.odsinstances (name, instancetype);

CREATE TABLE IF NOT EXISTS dbo.odsinstancecontexts (
    odsinstancecontextid      serial      NOT NULL,
    odsinstance_odsinstanceid integer     NOT NULL,
    contextkey                varchar(50) NOT NULL,
    contextvalue              varchar(50) NOT NULL,
    CONSTRAINT odsinstancecontext_pkey PRIMARY KEY (odsinstancecontextid),
    CONSTRAINT uc_odsinstancecontext_odsinstance_odsinstanceid_contextkey
        UNIQUE (odsinstance_odsinstanceid, contextkey),
    CONSTRAINT fk_odsinstancecontext_odsinstance_odsinstanceid
        FOREIGN KEY (odsinstance_odsinstanceid) REFERENCES dbo.odsinstances (odsinstanceid)
);

CREATE TABLE IF NOT EXISTS dbo.odsinstancederivatives (
    odsinstancederivativeid   serial      NOT NULL,
    odsinstance_odsinstanceid integer     NOT NULL,
    derivativetype            varchar(50) NOT NULL,
    connectionstring          varchar(1500),
    CONSTRAINT odsinstancederivative_pkey PRIMARY KEY (odsinstancederivativeid),
    CONSTRAINT uc_odsinstancederivative_odsinstance_odsinstanceid_derivativety
        UNIQUE (odsinstance_odsinstanceid, derivativetype),
    CONSTRAINT fk_odsinstancederivative_odsinstance_odsinstanceid
        FOREIGN KEY (odsinstance_odsinstanceid) REFERENCES dbo.odsinstances (odsinstanceid)
);

CREATE TABLE IF NOT EXISTS dbo.apiclientodsinstances (
    apiclientodsinstanceid    serial  NOT NULL,
    apiclient_apiclientid     integer NOT NULL,
    odsinstance_odsinstanceid integer NOT NULL,
    CONSTRAINT apiclientodsinstances_pkey PRIMARY KEY (apiclientodsinstanceid),
    CONSTRAINT fk_apiclientodsinstances_odsinstances_odsinstance_odsinstanceid
        FOREIGN KEY (odsinstance_odsinstanceid) REFERENCES dbo.odsinstances (odsinstanceid)
);

-- What Admin API 2.3's handlers also write (registration: adminapi).
CREATE TABLE IF NOT EXISTS dbo.vendors (
    vendorid   serial NOT NULL,
    vendorname varchar,
    CONSTRAINT vendors_pk PRIMARY KEY (vendorid)
);

CREATE TABLE IF NOT EXISTS dbo.applications (
    applicationid         serial       NOT NULL,
    applicationname       varchar,
    vendor_vendorid       integer,
    claimsetname          varchar(255),
    operationalcontexturi varchar(255) NOT NULL DEFAULT '',
    CONSTRAINT applications_pk PRIMARY KEY (applicationid)
);

CREATE TABLE IF NOT EXISTS dbo.apiclients (
    apiclientid               serial       NOT NULL,
    key                       varchar(50)  NOT NULL,
    secret                    varchar(100) NOT NULL,
    name                      varchar(50)  NOT NULL,
    isapproved                boolean      NOT NULL,
    usesandbox                boolean      NOT NULL,
    sandboxtype               integer      NOT NULL,
    application_applicationid integer,
    secretishashed            boolean      NOT NULL DEFAULT false,
    CONSTRAINT apiclients_pk PRIMARY KEY (apiclientid)
);
