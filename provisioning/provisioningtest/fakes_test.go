package provisioningtest_test

import (
	"testing"

	"github.com/edfi-tools/instancemgr/provisioning"
	"github.com/edfi-tools/instancemgr/provisioning/provisioningtest"
)

// The fakes pass the same suites as the PostgreSQL implementations, so a
// test against them says something about the real thing.
func TestFakeEngineConforms(t *testing.T) {
	provisioningtest.Engine(t, func(t *testing.T) provisioningtest.EngineSetup {
		guard := &provisioning.Guard{Naming: provisioning.Naming{Pattern: "fake_{name}"}, Protected: []string{"fake_template"}}
		e := provisioningtest.NewMemoryEngine(guard, "fake_template")
		return provisioningtest.EngineSetup{Engine: e, Template: "fake_template", Prefix: "fake", MakeForeign: func(_ *testing.T, name string) { e.MakeForeign(name) }, DropForeign: func(_ *testing.T, name string) { e.DropForeign(name) }}
	})
}

func TestFakeRegistryConforms(t *testing.T) {
	for _, adminAPI := range []bool{false, true} {
		provisioningtest.Registry(t, func(t *testing.T) provisioning.Registry {
			r := provisioningtest.NewMemoryRegistry()
			r.AdminAPIRegisters = adminAPI
			return r
		})
	}
}
