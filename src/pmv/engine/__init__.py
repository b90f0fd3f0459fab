"""pmv.engine"""
