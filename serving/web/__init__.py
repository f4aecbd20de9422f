"""The web application caseworkers and programme staff use every day, served by the same
process as the API: server-rendered pages, Chinese first, no script and no asset from outside
the package (a district office may have no internet)."""
