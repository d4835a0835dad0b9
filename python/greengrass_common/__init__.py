# Coupler's stand-in for the module that Greengrass Core provided to functions.
