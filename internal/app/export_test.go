package app

// ServeManage is serveManage, for the listener tests.
var ServeManage = serveManage
