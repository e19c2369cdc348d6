package postgres

// ODSBuildName is odsBuildName, for the tests of what a killed build leaves.
var ODSBuildName = odsBuildName
