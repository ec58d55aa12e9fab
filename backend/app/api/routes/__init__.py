"""The API's routes (HTTP only): tasks, household members, the ML features."""

from fastapi import APIRouter

from app.api.routes import household, ml, tasks

api_router = APIRouter()
api_router.include_router(tasks.router)
api_router.include_router(household.router)
api_router.include_router(ml.router)
