"""The API's routes (HTTP only): tasks, household members and categories, the ML features."""

from fastapi import APIRouter

from app.api.routes import categories, household, ml, tasks

api_router = APIRouter()
api_router.include_router(tasks.router)
api_router.include_router(household.router)
api_router.include_router(categories.router)
api_router.include_router(ml.router)
