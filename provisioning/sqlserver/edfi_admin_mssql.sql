-- The part of the ODS/API 7.x EdFi_Admin database (SQL Server) that
-- instance registration touches, in SQL Server's PascalCase: the same
-- tables, keys and unique constraints as provisioning/postgres/edfi_admin_pg.sql.
IF SCHEMA_ID(N'dbo') IS NULL EXEC(N'CREATE SCHEMA dbo');

CREATE TABLE dbo.OdsInstances (
    OdsInstanceId    int IDENTITY(1,1) NOT NULL,
    Name             nvarchar(100)     NOT NULL,
    InstanceType     nvarchar(100)     NULL,
    ConnectionString nvarchar(max)     NULL,
    CONSTRAINT PK_OdsInstances PRIMARY KEY CLUSTERED (OdsInstanceId)
);
CREATE UNIQUE INDEX UX_Name_InstanceType ON dbo.OdsInstances (Name, InstanceType);

CREATE TABLE dbo.OdsInstanceContexts (
    OdsInstanceContextId      int IDENTITY(1,1) NOT NULL,
    OdsInstance_OdsInstanceId int               NOT NULL,
    ContextKey                nvarchar(50)      NOT NULL,
    ContextValue              nvarchar(50)      NOT NULL,
    CONSTRAINT PK_OdsInstanceContexts PRIMARY KEY CLUSTERED (OdsInstanceContextId),
    CONSTRAINT UC_OdsInstanceContext_OdsInstance_OdsInstanceId_ContextKey UNIQUE (OdsInstance_OdsInstanceId, ContextKey),
    CONSTRAINT FK_OdsInstanceContexts_OdsInstances FOREIGN KEY (OdsInstance_OdsInstanceId) REFERENCES dbo.OdsInstances (OdsInstanceId)
);

CREATE TABLE dbo.OdsInstanceDerivatives (
    OdsInstanceDerivativeId   int IDENTITY(1,1) NOT NULL,
    OdsInstance_OdsInstanceId int               NOT NULL,
    DerivativeType            nvarchar(50)      NOT NULL,
    ConnectionString          nvarchar(max)     NULL,
    CONSTRAINT PK_OdsInstanceDerivatives PRIMARY KEY CLUSTERED (OdsInstanceDerivativeId),
    CONSTRAINT UC_OdsInstanceDerivative_OdsInstance_OdsInstanceId_DerivativeType UNIQUE (OdsInstance_OdsInstanceId, DerivativeType),
    CONSTRAINT FK_OdsInstanceDerivatives_OdsInstances FOREIGN KEY (OdsInstance_OdsInstanceId) REFERENCES dbo.OdsInstances (OdsInstanceId)
);

CREATE TABLE dbo.ApiClientOdsInstances (
    ApiClientOdsInstanceId    int IDENTITY(1,1) NOT NULL,
    ApiClient_ApiClientId     int               NOT NULL,
    OdsInstance_OdsInstanceId int               NOT NULL,
    CONSTRAINT PK_ApiClientOdsInstances PRIMARY KEY CLUSTERED (ApiClientOdsInstanceId),
    CONSTRAINT FK_ApiClientOdsInstances_OdsInstances FOREIGN KEY (OdsInstance_OdsInstanceId) REFERENCES dbo.OdsInstances (OdsInstanceId)
);
