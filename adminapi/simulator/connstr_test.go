package simulator

import "testing"

func TestValidateConnectionString(t *testing.T) {
	tests := []struct {
		name, cs string
		want     string
	}{
		{"Npgsql", "host=127.0.0.1;port=5432;username=postgres;password=x;database=EdFi_Ods_x", ""},
		{"Npgsql, trailing semicolon and spaces", " Host = db ; Database = EdFi_Ods_x ; ", ""},
		{"Npgsql Server and DB aliases", "Server=db;DB=ods", ""},
		{"SqlClient", "Server=sql1;Database=EdFi_Ods_x;User Id=sa;Password=x;", ""},
		{"SqlClient Data Source and Initial Catalog", "Data Source=(local);Initial Catalog=EdFi;Integrated Security=true", ""},
		{"SqlClient with extra spaces in keys", "data  source=tcp:sql1,1433;initial catalog=EdFi", ""},
		{"quoted password with a semicolon", `host=db;database=d;password='a;b''c'`, ""},
		{"double-quoted value", `host=db;database="my ""db"""`, ""},
		// Npgsql and SqlClient read ADO.NET pairs only, and so does 2.2.2.
		{"postgres URL", "postgres://u:p@db:5432/EdFi_Ods_x?sslmode=disable", msgConnInvalid},
		{"postgresql URL", "postgresql://db/ods", msgConnInvalid},
		{"empty", "", msgConnRequired},
		{"blank", "  \t", msgConnRequired},
		{"no pairs", "EdFi_Ods_x", msgConnInvalid},
		{"no database", "host=db;username=u", msgConnInvalid},
		{"no host", "database=d;username=u", msgConnInvalid},
		{"empty host", "host=;database=d", msgConnInvalid},
		{"empty key", "=x;host=db;database=d", msgConnInvalid},
		{"pair without =", "host=db;database=d;garbage", msgConnInvalid},
		{"unterminated quote", "host=db;database=d;password='abc", msgConnInvalid},
		{"text after a quoted value", "host=db;database='d'x", msgConnInvalid},
		{"encrypted value", "aGVsbG8=.d29ybGQ=.eA==", msgConnInvalid},
		{"URL without host", "postgres:///ods", msgConnInvalid},
		{"URL without database", "postgres://db:5432", msgConnInvalid},
		{"URL with only a slash", "postgresql://db/", msgConnInvalid},
		{"other URL scheme", "mysql://db/ods", msgConnInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := validateConnectionString(tt.cs); got != tt.want {
				t.Fatalf("validateConnectionString(%q) = %q, want %q", tt.cs, got, tt.want)
			}
		})
	}
}
